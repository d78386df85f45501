# Sourced by test scripts. ranks_of PID: the pids of the dsmil_train processes whose parent is PID (an
# mpirun), read from /proc because procps may not be installed.
ranks_of() {
  local stat pid comm state ppid rest
  for stat in /proc/[0-9]*/stat; do
    read -r pid comm state ppid rest < "$stat" 2> /dev/null || continue
    if [ "$ppid" = "$1" ] && [ "$comm" = "(dsmil_train)" ]; then echo "$pid"; fi
  done
}
