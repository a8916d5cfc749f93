# shellcheck shell=bash
# Sourced by runInFs() (test/helpers/fs.ts) before the test's script; the lines
# these functions print are parsed back by the parsers there. One tab-separated
# line per fact, so a test can snapshot state before and after an action in the
# same run and compare exactly.
#
#   observe PATH...         OBS  path kind inode mode uid gid mtime ctime attrs subvol fstype
#   observe_xattrs PATH...  XATTR path name value           (one line per xattr)
#   observe_tree DIR        TREE relpath kind inode mode uid gid mtime ctime attrs subvol fstype content xattrs
#   section NAME            SECTION name                    (separates snapshots)
#
# Paths under $MNT print as if $MNT were / ("$MNT/var/x" -> "/var/x"): the tests
# use $MNT as the install root, and the mount point's name changes every run.
# In observe_tree, paths are relative to DIR ("." is DIR itself) so two trees can
# be compared. Backslash, tab and newline in paths print as \\ \t \n.
# A field that does not apply is "-". Values: kind missing|dir|file|symlink|other;
# mode octal as stat %a; times seconds.nanoseconds; attrs the flags field of
# lsattr -d; subvol yes|no on btrfs; fstype as stat -f -c %T (ext4 is
# "ext2/ext3"); xattr values as getfattr -e hex ("0x..."), ACLs included;
# content the sha256 of a file or the target of a symlink; xattrs name=value
# joined by ",".

_obs_esc() {
  local s=$1
  s=${s//\\/\\\\}
  s=${s//$'\t'/\\t}
  REPLY=${s//$'\n'/\\n}
}

_obs_label() {
  local p=$1
  if [[ -n ${MNT:-} && ( $p == "$MNT" || $p == "$MNT"/* ) ]]; then
    p=${p#"$MNT"}
    p=${p:-/}
  fi
  _obs_esc "$p"
}

# Sets REPLY to the fields from kind to fstype, and _OBS_KIND.
_obs_fields() {
  local p=$1 line kind inode mode uid gid mtime ctime attrs=- subvol=- fstype=-
  # LC_ALL=C: stat translates %F ("directory").
  if ! line=$(LC_ALL=C stat -c $'%F\t%i\t%a\t%u\t%g\t%.9Y\t%.9Z' -- "$p" 2>/dev/null); then
    _OBS_KIND=missing
    REPLY=$'missing\t-\t-\t-\t-\t-\t-\t-\t-\t-'
    return 0
  fi
  IFS=$'\t' read -r kind inode mode uid gid mtime ctime <<<"$line"
  case $kind in
    directory) kind=dir ;;
    'regular file' | 'regular empty file') kind='file' ;;
    'symbolic link') kind=symlink ;;
    *) kind=other ;;
  esac
  # A symlink has no flags or file system of its own (stat -f would follow it);
  # lsattr would open a fifo or a device.
  if [[ $kind == dir || $kind == file ]]; then
    if attrs=$(lsattr -d -- "$p" 2>/dev/null); then attrs=${attrs%% *}; else attrs=-; fi
  fi
  if [[ $kind != symlink ]]; then
    fstype=$(LC_ALL=C stat -f -c %T -- "$p" 2>/dev/null) || fstype=-
  fi
  if [[ $fstype == btrfs ]]; then
    subvol=no
    # Inode 256 is a subvolume's root; asking btrfs only then keeps this cheap.
    if [[ $kind == dir && $inode == 256 ]] && btrfs subvolume show -- "$p" >/dev/null 2>&1; then
      subvol=yes
    fi
  fi
  _OBS_KIND=$kind
  REPLY="$kind"$'\t'"$inode"$'\t'"$mode"$'\t'"$uid"$'\t'"$gid"$'\t'"$mtime"$'\t'"$ctime"$'\t'"$attrs"$'\t'"$subvol"$'\t'"$fstype"
}

# Sets _OBS_XA to "name<TAB>value" lines sorted by name (getfattr lists them in
# the file system's own order).
_obs_xattrs() {
  local line
  _OBS_XA=()
  while IFS= read -r line; do
    [[ -z $line || $line == '#'* ]] && continue
    # Values are hex, so the last "=" ends the name.
    _OBS_XA+=("${line%=*}"$'\t'"${line##*=}")
  done < <(getfattr -h -d -m - -e hex --absolute-names -- "$1" 2>/dev/null | LC_ALL=C sort)
}

observe() {
  local p label
  for p in "$@"; do
    _obs_label "$p"
    label=$REPLY
    _obs_fields "$p"
    printf 'OBS\t%s\t%s\n' "$label" "$REPLY"
  done
}

observe_xattrs() {
  local p label x
  for p in "$@"; do
    _obs_label "$p"
    label=$REPLY
    _obs_xattrs "$p"
    for x in "${_OBS_XA[@]}"; do
      printf 'XATTR\t%s\t%s\n' "$label" "$x"
    done
  done
}

observe_tree() {
  local dir=${1%/} rel p fields content xattrs x
  local -a rels
  mapfile -d '' -t rels < <(find "$1" -printf '%P\0' 2>/dev/null | LC_ALL=C sort -z)
  # find prints nothing for a missing DIR: still report it, as missing.
  [[ ${#rels[@]} -gt 0 ]] || rels=('')
  for rel in "${rels[@]}"; do
    p=${rel:+$dir/$rel}
    p=${p:-$1}
    _obs_fields "$p"
    fields=$REPLY
    case $_OBS_KIND in
      file)
        content=$(sha256sum <"$p") || content=-
        content=${content%% *}
        ;;
      symlink)
        content=$(readlink -- "$p") || content=-
        _obs_esc "$content"
        content=$REPLY
        ;;
      *) content=- ;;
    esac
    _obs_xattrs "$p"
    xattrs=
    for x in "${_OBS_XA[@]}"; do xattrs+=${xattrs:+,}${x/$'\t'/=}; done
    _obs_esc "${rel:-.}"
    printf 'TREE\t%s\t%s\t%s\t%s\n' "$REPLY" "$fields" "$content" "${xattrs:--}"
  done
}

section() {
  printf 'SECTION\t%s\n' "$1"
}
