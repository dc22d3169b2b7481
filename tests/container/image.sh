#!/usr/bin/env bash
# Build the test image of the container tier: a Debian root filesystem made
# with mmdebstrap from Debian's archive, with a virtualenv holding layerfs's
# runtime and test dependencies, written as an OCI image layout.
#
#   tests/container/image.sh OUT_DIR REQUIREMENTS_FILE
#
# scripts/container-run calls this and keys its cache by a hash of this file
# and of REQUIREMENTS_FILE, so editing either rebuilds the image. layerfs
# itself is not in the image: the checkout is bind-mounted in at run time.
#
# Environment: DEBIAN_SUITE (default trixie), DEBIAN_MIRROR (default
# http://deb.debian.org/debian).
#
# trixie, not bookworm: bookworm's python3 is 3.11.2, whose tarfile lacks the
# extraction filters (3.11.4+) that layerfs's layer code uses.
set -euo pipefail

out=$1
reqs=$2
suite=${DEBIAN_SUITE:-trixie}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

# What the privileged tests and the bench call: filesystems and their tools,
# loop devices, FUSE, ps for the leak check.
packages=(
    python3 python3-venv ca-certificates
    e2fsprogs xfsprogs btrfs-progs util-linux mount kmod procps
    fuse3 fuse-overlayfs zstd
)

work=$(mktemp -d "${TMPDIR:-/var/tmp}/layerfs-image.XXXXXX")
trap 'rm -rf "$work"' EXIT
cp "$reqs" "$work/requirements.txt"
# pip inside the new root trusts the host's CA bundle, so a TLS-inspecting
# proxy between this machine and PyPI works there too.
cp "${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}" "$work/ca.crt"

# The venv is made in a customize hook, inside the new root, with its own
# Debian python3; pip reaches PyPI through the host's network during the build.
# It runs with a clean environment: the host's REQUESTS_CA_BUNDLE and the like
# name files of the host, and requests prefers them to --cert.
mmdebstrap --quiet --variant=minbase --include="$(IFS=,; echo "${packages[*]}")" \
    --customize-hook="cp $work/requirements.txt $work/ca.crt \"\$1/tmp/\"" \
    --customize-hook='chroot "$1" python3 -m venv /opt/venv' \
    --customize-hook='chroot "$1" env -i PATH=/usr/bin:/bin HOME=/root PIP_DISABLE_PIP_VERSION_CHECK=1 /opt/venv/bin/pip install -q --no-cache-dir --cert /tmp/ca.crt -r /tmp/requirements.txt' \
    --customize-hook='ln -sf ../proc/self/mounts "$1/etc/mtab"' \
    --customize-hook='rm -f "$1/tmp/requirements.txt" "$1/tmp/ca.crt"; rm -rf "$1/var/lib/apt/lists/"* "$1/var/cache/apt/"*.bin' \
    "$suite" "$work/rootfs.tar" "$mirror"

# One-layer OCI image layout (image-spec v1.0): the rootfs tar as the layer,
# a config that names it by digest, a manifest, and an index naming the image.
blobs=$work/layout/blobs/sha256
mkdir -p "$blobs"
layer_digest=$(sha256sum "$work/rootfs.tar" | cut -d' ' -f1)
layer_size=$(stat -c %s "$work/rootfs.tar")
mv "$work/rootfs.tar" "$blobs/$layer_digest"

blob() {  # store stdin as a blob; print "digest size"
    local tmp=$work/blob d
    cat >"$tmp"
    d=$(sha256sum "$tmp" | cut -d' ' -f1)
    mv "$tmp" "$blobs/$d"
    echo "$d $(stat -c %s "$blobs/$d")"
}

read -r config_digest config_size < <(printf '%s' \
    '{"architecture":"amd64","os":"linux",' \
    '"config":{"Env":["PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["/bin/bash"]},' \
    "\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"sha256:$layer_digest\"]}}" | blob)
read -r manifest_digest manifest_size < <(printf '%s' \
    '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",' \
    "\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"sha256:$config_digest\",\"size\":$config_size}," \
    "\"layers\":[{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\",\"digest\":\"sha256:$layer_digest\",\"size\":$layer_size}]}" | blob)
printf '%s' '{"imageLayoutVersion":"1.0.0"}' >"$work/layout/oci-layout"
printf '%s' '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json",' \
    "\"digest\":\"sha256:$manifest_digest\",\"size\":$manifest_size," \
    '"annotations":{"org.opencontainers.image.ref.name":"latest"}}]}' >"$work/layout/index.json"

rm -rf "$out"
mkdir -p "$(dirname "$out")"
mv "$work/layout" "$out"
