"""Raw syscalls, ioctls and ctypes. Everything that talks to the kernel by number lives here.

Modules: ``mount`` (mount(2), umount2(2), /proc/self/mountinfo), ``clone``
(FICLONE reflinks and copy_file_range). Drivers add their own modules here
(new mount API, /dev/fuse ioctls) rather than calling ctypes elsewhere.
"""
