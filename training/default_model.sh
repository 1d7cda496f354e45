#!/usr/bin/env bash
# Reproduces the shipped default model (models/default) on a CPU machine with the archive loop
# a KYC data team runs: scan real media, add the known labels as analysts' verdicts, mine
# labelled crops (verdicts first, the reference scorer's confident scores as soft labels), add
# synthetic print and replay attacks rendered from those real faces, train the B2, and
# measure it on real images held out from all of it.
#   bash training/default_model.sh [OUT_DIR] [REAL_DIR]
# Steps already done are reused (delete data/real-loop to start over); the checkpoint goes to OUT_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-data/model-default}"
real="${2:-../shared/real}"
work=data/real-loop
size=128  # the shipped input size (260, the B2's native, costs 4x the compute per crop: liveness bench)
# 1. The real images split by person: "tune" feeds the loop, "test" is held out from every step.
uv run python -m training.real_data --real "$real" --out "$work/labels.csv" --media "$work/media" --split tune
# 2. Scan them (photos are one-frame sessions) with the real video; the scan links same-face sessions.
uv run liveness scan "$work/media" "$real/videos" --out "$work/scan" --quiet \
  --set 'input.extensions=[jpg, jpeg, png, mp4]'
# 3. Their known labels as verdicts, and the video's (a camera recording of real people on
#    stage: bona fide, though its cuts and several faces fire signals). Committed once.
printf 'session_id,verdict,note\nshort_hamilton_clip,live,camera recording of real people (shared/real README)\n' \
  > "$work/video-verdicts.csv"
if uv run liveness query --out "$work/scan" "select count(*) as n from verdicts" --format csv | grep -qx 0; then
  uv run liveness verdicts add "$work/media/verdicts.csv" --out "$work/scan" --analyst "shared/real labels"
  uv run liveness verdicts add "$work/video-verdicts.csv" --out "$work/scan" --analyst "shared/real README"
fi
# 4. Mine: verdicts first, then the reference scorer's confident sessions (configs/mine.yaml).
uv run liveness mine --out "$work/scan" --to "$work/mined" --set size=$size --set crops_per_session=12
# 5. Synthetic print and replay attacks (and live scenes) rendered from the same real faces.
[ -f "$work/synth/images/manifest.csv" ] || uv run liveness synth --out "$work/synth" --faces "$work/media/live" \
  --sessions 0 --images-per-class 1000 --seed 0
[ -f "$work/synth-crops/crops.csv" ] || uv run liveness preprocess --raw "$work/synth/images" \
  --out "$work/synth-crops" --size $size --scale 1.6
# 6. Train on both, each subject equally likely (a real face photographed once weighs as much as a rendered one).
uv run liveness train --data "$work/mined" --data "$work/synth-crops" --out "$out" \
  --set epochs=15 --set patience=4 --set seed=0 --set sampling=subject --set version=b2-real-20261202 \
  --set "trained_on=$(cat training/default_model.trained_on.txt)" \
  --set "limits=$(cat training/default_model.limits.txt)" \
  --set "reproduce=bash training/default_model.sh"
# 7. The held-out real images: ship only if it beats the current model there.
uv run liveness evaluate --images "$work/labels.csv" --split test --model "$out" --out "$work/eval-test"
