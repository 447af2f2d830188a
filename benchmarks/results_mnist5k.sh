#!/usr/bin/env bash
# The docs/results.md table: every model on the offline MNIST 5,000 (4,000 train / 1,000 held out),
# trained by its config, then evaluated with the same metrics. Usage (from the repository root):
#   bash benchmarks/results_mnist5k.sh [OUT=runs/results] [MODELS="quickstart ae dae sae vae dcgan vaegan alae_style stylegan"]
# The style models (progressive, 32x32) are given STYLE_KIMG thousand images (default 24) and the
# VAE-GAN VAEGAN_KIMG (default 20) instead of the 200 of the others: on a 2-core CPU they train at
# 20 to 40 images/s, so 200 kimg would take hours each.
set -euo pipefail
OUT=${OUT:-runs/results}
MODELS=${MODELS:-"quickstart ae dae sae vae dcgan vaegan alae_style stylegan"}
STYLE_KIMG=${STYLE_KIMG:-24}
VAEGAN_KIMG=${VAEGAN_KIMG:-20}
DATA=data/mnist5k/mnist5k
METRICS=domain_fid,domain_fid_rec,class_histogram,latent_probe,recon_mse,label_preservation
mkdir -p "$OUT"
[ -f "$DATA.classifier.keras" ] || python -m alae_tf.evaluate --train_classifier --data_dir=$DATA \
    || { python -m tfrecords_tools.convert --source=mnist5k --output_dir=data/mnist5k --name=mnist5k \
           --resolution=32 --channels=1 --labels --test_count=1000 \
         && python -m alae_tf.evaluate --train_classifier --data_dir=$DATA; }
for m in $MODELS; do
  case $m in
    quickstart) args=(--flagfile=configs/quickstart.cfg) ;;
    alae_style) args=(--flagfile=configs/mnist.cfg --data_dir=$DATA --kimg_per_lod=$((STYLE_KIMG / 4))
                      --total_kimg=$STYLE_KIMG --snapshot_kimg=6 --checkpoint_kimg=6) ;;
    stylegan)   args=(--flagfile=configs/stylegan.cfg --kimg_per_lod=$((STYLE_KIMG / 4))
                      --total_kimg=$STYLE_KIMG --snapshot_kimg=6 --checkpoint_kimg=6) ;;
    vaegan)     args=(--flagfile=configs/vaegan.cfg --total_kimg=$VAEGAN_KIMG --snapshot_kimg=5 --checkpoint_kimg=5) ;;
    *)          args=(--flagfile=configs/$m.cfg) ;;
  esac
  start=$(date +%s)
  python -m alae_tf.train "${args[@]}" --output_dir="$OUT/$m" --log_seconds=60 2> "$OUT/$m.train.log"
  echo "$m: trained in $(( $(date +%s) - start )) s" | tee -a "$OUT/times.txt"
  python -m alae_tf.evaluate --run_dir="$OUT/$m" --data_dir=$DATA --metrics=$METRICS --num_images=5000 \
      2> "$OUT/$m.eval.log" | tail -n +1 > "$OUT/$m.eval.md"
done
