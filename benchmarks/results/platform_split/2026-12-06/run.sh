#!/bin/bash
# Old (8617ef6) vs new (main, native = the kernel old 'auto' used) surgery speed, alternating, 2 rounds.
set -x
A="--runs=vgg16:auto,resnet56:auto --targets=0.5 --families=uniform --channel_multiples=8 --batch_sizes=1,128 --repeats=7 --noconv_table"
N="--runs=vgg16:native,resnet56:native --targets=0.5 --families=uniform --channel_multiples=8 --batch_sizes=1,128 --repeats=7 --noconv_table"
O=/work/runs/bench; mkdir -p $O
lscpu | grep 'Model name' > $O/cpu.txt; uptime >> $O/cpu.txt
for i in 1 2; do
  (cd /work/baseline && PYTHONPATH=/work/baseline python3 benchmarks/surgery_speed.py $A --out=$O/surgery_old_$i.md)
  (cd /work/main && PYTHONPATH=/work/main python3 benchmarks/surgery_speed.py $N --out=$O/surgery_new_native_$i.md)
  uptime >> $O/cpu.txt
done
