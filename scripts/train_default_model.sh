#!/usr/bin/env bash
# Reproduce the bundled default model (device/data/default-model/): fine-tune EfficientNet-Lite2 (260 px)
# from the shared ImageNet weights on ../shared/datasets/trashnet3 (can, glass, plastic),
# ../shared/datasets/trashnet-rest (cardboard, paper, trash: general waste the bin must keep out of the
# recycling) and ../shared/datasets/drinking-waste, pasting 70 % of the white-board photos (every class)
# onto other backgrounds in every epoch, then convert it to an int8 bundle (the conversion's parity gate,
# at its default 1.0 point, fails the script if int8 loses more) whose manifest carries the thresholds of
# can, glass and plastic chosen on the validation photos for the sorting outcome (converters/outcomes.py).
#
#   scripts/train_default_model.sh [RUN_DIR] [BUNDLE_DIR]
#
# SHARED points at the folder holding datasets/ and weights/ (default: ../shared beside the repo).
# 30 min on a quiet 2-core Xeon with AVX-512, 84 min on a slower shared one (docs/training.md has the figures);
# the same machine gives the same model, another CPU may round differently and give another draw.
set -euo pipefail
cd "$(dirname "$0")/.."
PATH="$PWD/.venv/bin:$PATH"  # the README's venv, if that is where smartbin is installed
SHARED=${SHARED:-../shared}
RUN=${1:-runs/default-lite2}
BUNDLE=${2:-runs/default-lite2-int8}

smartbin train "$SHARED/datasets/trashnet3" "$SHARED/datasets/trashnet-rest" "$SHARED/datasets/drinking-waste" \
    --classes can,glass,plastic,cardboard,paper,trash \
    --out "$RUN" --overwrite \
    --backbone efficientnet_lite2 --weights "$SHARED/weights/efficientnet_lite2_imagenet_torch_layout.npz" \
    --paste-backgrounds 0.7 --unfreeze 120 --fine-tune-epochs 20 --fine-tune-lr 1e-4 --label-smoothing 0.1 \
    --dropout 0.3 --patience 20 --seed 1 --quiet
smartbin convert "$RUN" --quantize int8 --representative 400 --out "$BUNDLE"
echo "bundle: $BUNDLE (install with: rm -rf device/data/default-model && cp -r $BUNDLE device/data/default-model)"
