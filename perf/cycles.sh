# Where the cycles go, for the in-memory benchmarks (sourced by perf/run-forward and
# perf/run-transports). This VM has no hardware performance counters (`perf stat -e
# cycles,instructions,cache-misses` answers <not supported>), so:
# - instructions and cache misses per packet come from valgrind's cachegrind (a simulated
#   I1/D1/LL hierarchy sized like this CPU's caches): the benchmark runs twice, with N1 and N2
#   packets, and the difference divided by N2 - N1 is the per-packet cost (set-up cancels out);
# - where the time goes comes from `perf record -e cpu-clock` (timer sampling, which works in
#   a VM): the top symbols of a normal run.
#
# where_cycles LABEL N1 N2 CMD...   (@N@ in CMD is replaced by the packet count)
# Runs pinned to CPU $CORE. Prints a markdown section. The simulated caches are this
# machine's: 32 KiB 8-way L1 per core and a 32 MiB 16-way L3 (the VM's cpuid reports an
# L3 valgrind cannot model, so the sizes are given).

# Per-function cachegrind counts summed over the pipeline's own functions (the cer_dataplane
# crate, inlined port I/O included) and over the whole process:
# "pipe_Ir pipe_D1 pipe_LL all_Ir all_D1 all_LL" (D1/LL: read + write misses).
cg_sums() {
  cg_annotate --auto=no --threshold=0 "$1" 2>/dev/null | awk '
    /file:function/ { body = 1; next }
    body && /^ *[0-9,]+ / {
      n = 0
      for (i = 1; i <= NF && n < 9; i++) {
        f = $i; if (f ~ /^\(/ || f ~ /%\)$/ || f == "(") continue
        gsub(",", "", f); if (f !~ /^[0-9]+$/) continue
        v[++n] = f
      }
      if (n < 9) next
      ir = v[1]; d1 = v[5] + v[8]; ll = v[6] + v[9]
      a_ir += ir; a_d1 += d1; a_ll += ll
      if ($0 ~ /:cer_dataplane::/) { p_ir += ir; p_d1 += d1; p_ll += ll }
    }
    END { printf "%.0f %.0f %.0f %.0f %.0f %.0f\n", p_ir, p_d1, p_ll, a_ir, a_d1, a_ll }'
}

where_cycles() {
  local label=$1 n1=$2 n2=$3
  shift 3
  local c1=() c2=() cp=() a
  # perf record runs 20x longer, so the steady state outweighs the set-up.
  for a in "$@"; do c1+=("${a//@N@/$n1}"); c2+=("${a//@N@/$n2}"); cp+=("${a//@N@/$((n2 * 20))}"); done
  local d
  d=$(mktemp -d /tmp/cer-cycles.XXXXXX)
  local cg=(valgrind --tool=cachegrind --cache-sim=yes --I1=32768,8,64 --D1=32768,8,64
    --LL=33554432,16,64)
  taskset -c "$CORE" "${cg[@]}" --cachegrind-out-file="$d/cg1" "${c1[@]}" >/dev/null 2>"$d/log1"
  taskset -c "$CORE" "${cg[@]}" --cachegrind-out-file="$d/cg2" "${c2[@]}" >/dev/null 2>"$d/log2"
  taskset -c "$CORE" perf record -q -e cpu-clock -F 4999 -o "$d/perf.data" "${cp[@]}" >/dev/null 2>&1
  local dn=$((n2 - n1)) ev
  echo "### Where the cycles go: $label"
  echo
  echo "Command: \`taskset -c $CORE ${c2[*]}\` under cachegrind and \`perf record\` (and with $n1"
  echo "packets for the difference)."
  echo
  local s1 s2
  read -r -a s1 <<<"$(cg_sums "$d/cg1")"
  read -r -a s2 <<<"$(cg_sums "$d/cg2")"
  per() { awk -v a="$1" -v b="$2" -v n="$dn" 'BEGIN { printf "%.1f", (b - a) / n }'; }
  echo "| per packet (cachegrind: $n2 - $n1 packets) | instructions | D1 misses | LL misses |"
  echo "|---|---|---|---|"
  echo "| pipeline (\`cer_dataplane\` functions, in-memory port I/O inlined) | $(per "${s1[0]}" "${s2[0]}") | $(per "${s1[1]}" "${s2[1]}") | $(per "${s1[2]}" "${s2[2]}") |"
  echo "| whole benchmark process (with its untimed refill/drain) | $(per "${s1[3]}" "${s2[3]}") | $(per "${s1[4]}" "${s2[4]}") | $(per "${s1[5]}" "${s2[5]}") |"
  echo
  echo "Top symbols by cpu-clock samples over $((n2 * 20)) packets (whole process: the benchmark's"
  echo "set-up and its own refill and drain of the in-memory ports are listed too, though only"
  echo "\`Worker::poll\` is timed):"
  echo
  echo '```'
  perf report -i "$d/perf.data" --no-children --percent-limit 1.5 --stdio 2>/dev/null \
    | awk '/^ +[0-9.]+%/ { $2 = ""; $3 = ""; print }' | sed 's/  */ /g' | head -14
  echo '```'
  echo
  rm -rf "$d"
}
