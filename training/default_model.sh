#!/usr/bin/env bash
# Reproduces the shipped default model (models/default) on a CPU machine:
#   bash training/default_model.sh [OUT_DIR]
# Steps already done (data/synth, data/processed) are reused; the checkpoint goes to OUT_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-data/model-default}"
[ -f data/synth/images/manifest.csv ] || uv run liveness synth --out data/synth --sessions 40 --images-per-class 500 --seed 0
[ -f data/processed/crops.csv ] || uv run liveness preprocess --raw data/synth/images --out data/processed --size 128 --scale 1.6
uv run liveness check-data --data data/processed
uv run liveness train --data data/processed --out "$out" \
  --set epochs=10 --set seed=0 --set version=b2-synth-20261123 \
  --set "trained_on=SYNTHETIC data only: liveness synth --seed 0 (500 live + 250 print + 250 replay scene images of 101 face photographs shipped by matplotlib and scikit-image), cropped by liveness preprocess at scale 1.6, 128 px; split by subject 70/15/15" \
  --set "limits=Trained from scratch (no ImageNet weights) on synthetic renderings; it has seen no real print, replay, mask or deepfake attack and no real camera. Its metrics are on held-out synthetic subjects and say nothing about real attacks. Retrain on your own labelled data (README: Training your own model) before relying on its decisions." \
  --set "reproduce=bash training/default_model.sh"
