# persist-entry.sh ROOT STORAGE KIND PATH USER GROUP MODE [HOME]
#
# One persisted entry, done the way impermanence does it: its
# create-directories.bash for the entry's directory and each parent (the
# persistent side made with the entry's owner and mode when missing, the
# ephemeral side mirroring it), then a bind mount of the directory, or, for
# a file, mount-file.bash (bind the persistent file; /etc/machine-id
# started as "uninitialized"; else a symlink to where it will be). The boot
# benchmark's peers run one shell process of this per entry, as
# impermanence runs one per entry. ROOT is the new root (/root or
# /sysroot), STORAGE the persistent storage (/persist), KIND dir or file,
# PATH the entry, USER/GROUP numeric ids, MODE octal; HOME the user's home
# for a user's entry (its parents inside are the user's, the home 0700).
set -eu
[ $# -ge 7 ] || { echo "persist-entry.sh: expected ROOT STORAGE KIND PATH USER GROUP MODE [HOME]" >&2; exit 1; }
root=$1 storage=$2 kind=$3 path=$4 user=$5 group=$6 mode=$7 home=${8:-}

# Whether PATH (inside the new root) is a mount point: findmnt's answer,
# from the mount table (the paths here have no spaces).
mounted() { grep -q " $1 " /proc/self/mountinfo; }

# create-directories.bash for one directory D: the source with OWNER and
# MODE if missing, the target made and given the source's owner and mode.
create_directory() {
  src="$root$storage$1" dst="$root$1"
  if [ ! -d "$src" ]; then
    mkdir -m "$4" "$src"
    chown "$2:$3" "$src"
  fi
  [ -d "$dst" ] || mkdir "$dst"
  chown "$(stat -c %u:%g "$src")" "$dst"
  chmod "$(stat -c %a "$src")" "$dst"
}

# The parents, outermost first: root's 0755, a user's home theirs 0700 and
# the directories inside it theirs 0755.
parent=${path%/*}
at=""
set -f
IFS=/
for part in ${parent#/}; do
  at="$at/$part"
  if [ -n "$home" ] && [ "$at" = "$home" ]; then
    create_directory "$at" "$user" "$group" 0700
  elif [ -n "$home" ] && [ "${at#"$home"/}" != "$at" ]; then
    create_directory "$at" "$user" "$group" 0755
  else
    create_directory "$at" 0 0 0755
  fi
done
unset IFS

case $kind in
dir)
  create_directory "$path" "$user" "$group" "$mode"
  mounted "$root$path" || mount -o bind "$root$storage$path" "$root$path"
  ;;
file)
  point="$root$path" target="$root$storage$path"
  if [ -L "$point" ] && [ "$(readlink "$point")" = "$storage$path" ]; then
    :
  elif mounted "$point"; then
    :
  elif [ -s "$point" ]; then
    echo "A file already exists at $path!" >&2
    exit 1
  elif [ -e "$target" ]; then
    touch "$point"
    mount -o bind "$target" "$point"
  elif [ "$path" = /etc/machine-id ]; then
    echo uninitialized >"$target"
    touch "$point"
    mount -o bind "$target" "$point"
  else
    ln -s "$storage$path" "$point"
  fi
  ;;
*)
  echo "persist-entry.sh: unknown kind $kind" >&2
  exit 1
  ;;
esac
