#!/usr/bin/env bash
# A plait dynamic generator written in bash, with no Python and no protobuf library.
#
# Usage (as a process target): fan_out.sh {{.input}} {{.outputPrefix}}
# Input:  n (integer).   Output: out (list of integers).
# It writes futures.pb: a DynamicJobSpec with n nodes, node i running the embedded task
# "examples.process.echo" (a process target that copies its input to its output) on x=i, and
# binds the spec's output `out` to the list of every node's x. The engine compiles and runs it.
set -euo pipefail
input=$1
prefix=$2

# --- a tiny protobuf encoder: every value is a hex string -------------------------------------
varint() {
  local n=$1 out=""
  while ((n >= 128)); do
    out+=$(printf '%02x' $(((n & 127) | 128)))
    n=$((n >> 7))
  done
  printf '%s%02x' "$out" "$n"
}
# field number + wire type 0 (varint)
num() { printf '%s%s' "$(varint $(($1 << 3)))" "$(varint "$2")"; }
# field number + wire type 2 (length-delimited) around an already encoded hex payload
msg() { printf '%s%s%s' "$(varint $(($1 << 3 | 2)))" "$(varint $((${#2} / 2)))" "$2"; }
str() { msg "$1" "$(printf '%s' "$2" | od -An -v -tx1 | tr -d ' \n')"; }

# --- read n: the input map holds one integer, whose varint ends the file -----------------------
mapfile -t bytes < <(od -An -v -tu1 "$input" | tr -s ' ' '\n' | sed '/^$/d')
last=$((${#bytes[@]} - 1))
start=$last
while ((start > 0 && bytes[start - 1] >= 128)); do start=$((start - 1)); done
n=0
for ((i = last; i >= start; i--)); do n=$(((n << 7) | (bytes[i] & 127))); done

# --- the embedded task: echo(x: int) -> x: int --------------------------------------------------
int_type=$(num 1 2)                                        # LiteralType{simple: INTEGER}
var_x=$(msg 1 "$(str 1 x)$(msg 2 "$int_type")")            # VariableMap{variables: [x: int]}
interface=$(msg 1 "$var_x")$(msg 2 "$var_x")               # TypedInterface{inputs, outputs}
task_id=$(num 1 1)$(str 2 default)$(str 3 development)$(str 4 examples.process.echo)$(str 5 v1)
process=$(str 1 cp)$(str 2 '{{.input}}')$(str 2 '{{.outputPrefix}}/outputs.pb')
task=$(msg 1 "$task_id")$(str 2 process)$(msg 4 "$interface")$(msg 6 "$process")

# --- n nodes and the output binding -------------------------------------------------------------
nodes=""
promises=""
for ((i = 0; i < n; i++)); do
  literal=$(msg 1 "$(msg 1 "$(num 1 "$i")")")            # Literal{scalar{primitive{integer}}}
  binding=$(str 1 x)$(msg 2 "$(msg 1 "$literal")")       # Binding{var: x, binding{literal}}
  node=$(str 1 "n$i")$(msg 3 "$binding")$(msg 5 "$(msg 1 "$task_id")")
  nodes+=$(msg 1 "$node")
  promises+=$(msg 1 "$(msg 4 "$(str 1 "n$i")$(str 2 x)")")
done
outputs=$(msg 2 "$(str 1 out)$(msg 2 "$(msg 2 "$promises")")")
spec="$nodes$outputs$(msg 3 "$task")"

printf '%b' "$(printf '%s' "$spec" | sed 's/../\\x&/g')" >"$prefix/futures.pb"
