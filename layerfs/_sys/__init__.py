"""Raw syscalls, ioctls and ctypes. Everything that talks to the kernel by number lives here.

Modules: ``mount`` (mount(2), umount2(2), /proc/self/mountinfo), ``clone``
(FICLONE reflinks and copy_file_range). Drivers add their own modules here
(new mount API, /dev/fuse ioctls) rather than calling ctypes elsewhere.

Three file helpers live here too, one of each for the whole project:
``clone.copy_data`` (copy a file's data in the kernel), ``xattrs.copy_xattrs``
and ``tree.remove_tree``.
"""
