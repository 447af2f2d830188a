#!/usr/bin/env bash
# The docs/results.md tables: every model on the offline MNIST 5,000 (4,000 train / 1,000 held out),
# trained by its config for the same wall time on this machine, then evaluated with the same
# metrics. Usage (from the repository root, nothing else running):
#   bash benchmarks/results_mnist5k.sh [OUT=runs/results] [RUNS="stylealae stylegan ..."]
# Runs (each RUN writes OUT/RUN, OUT/RUN.train.log and OUT/RUN.eval.md):
#   stylealae           configs/quickstart.cfg (StyleALAE, a 5-minute schedule), 5 minutes
#   stylegan            configs/stylegan.cfg with the quickstart's schedule, 5 minutes
#   alae_mlp ae dae sae vae vaegan dcgan rae ae_greedy   their configs, 5 minutes (past their kimg if need
#                       be; ae_greedy: its greedy pairs, then fine-tuning to the limit)
#   stylealae_20min     configs/mnist_small.cfg, 20 minutes; also evaluated at 10 minutes
#   stylegan_20min      configs/stylegan.cfg, 20 minutes
set -euo pipefail
OUT=${OUT:-runs/results}
RUNS=${RUNS:-"stylealae stylegan alae_mlp dcgan vae vaegan ae dae sae rae ae_greedy stylealae_20min stylegan_20min"}
DATA=data/mnist5k/mnist5k
METRICS=domain_fid,domain_fid_rec,class_histogram,latent_probe,recon_mse,label_preservation
mkdir -p "$OUT"
[ -f "$DATA.manifest.json" ] || python -m tfrecords_tools.convert --source=mnist5k --output_dir=data/mnist5k --name=mnist5k \
         --resolution=32 --channels=1 --labels --test_count=1000
[ -f "$DATA.classifier.keras" ] || python -m alae_tf.evaluate --train_classifier --data_dir=$DATA

evaluate() {  # RUN_DIR OUTPUT_NAME [--checkpoint=...]
  python -m alae_tf.evaluate --run_dir="$1" --data_dir=$DATA --metrics=$METRICS --num_images=5000 \
      --output="$OUT/$2.eval" "${@:3}" 2> "$OUT/$2.eval.log" > "$OUT/$2.eval.md"
}

for run in $RUNS; do
  case $run in
    stylealae)       args=(--flagfile=configs/quickstart.cfg --time_limit_minutes=5) ;;
    stylegan)        args=(--flagfile=configs/stylegan.cfg --kimg_per_lod=12 --total_kimg=10000 --time_limit_minutes=5) ;;
    stylealae_20min) args=(--flagfile=configs/mnist_small.cfg --time_limit_minutes=20 --snapshot_kimg=10
                           --checkpoint_kimg=10 --keep_checkpoints=100) ;;
    stylegan_20min)  args=(--flagfile=configs/stylegan.cfg --total_kimg=10000 --time_limit_minutes=20) ;;
    *)               args=(--flagfile=configs/$run.cfg --total_kimg=10000 --time_limit_minutes=5) ;;
  esac
  rm -rf "${OUT:?}/$run"
  python -m alae_tf.train "${args[@]}" --output_dir="$OUT/$run" --log_seconds=60 2> "$OUT/$run.train.log"
  evaluate "$OUT/$run" "$run"
  if [ "$run" = stylealae_20min ]; then
    ckpt=$(python benchmarks/results_table.py --checkpoint_at=10 "$OUT/$run.train.log")
    evaluate "$OUT/$run" "${run%_20min}_10min" --checkpoint="$ckpt"
  fi
done
python benchmarks/results_table.py "$OUT"
