#!/usr/bin/env bash
# A PaddleSeg reproduction on the real data: download, check, 3-seed sweep, report.
#   bash experiments/run_paddle.sh {roads|voc} DATA_DIR [train overrides, e.g. trainer.devices=2]
# Needs internet (the dataset, the ImageNet encoder weights) and a GPU. See paddle_*/README.md.
set -euo pipefail
usage="usage: run_paddle.sh {roads|voc} DATA_DIR [train overrides...]"
study=${1:?$usage}
data=${2:?$usage}
shift 2
case "$study" in
  roads) dataset=mini_deepglobe baseline=bce losses=bce,lovasz_hinge_bce ;;
  voc) dataset=voc2012 baseline=ce losses=ce,lovasz_softmax_ce ;;
  *) echo "run_paddle.sh: unknown study '$study' (expected roads or voc)" >&2; exit 2 ;;
esac
python=${PYTHON:-python}
root="$data/$dataset"
sweep="multirun/paddle_$study/$(date +%Y-%m-%d_%H-%M-%S)"

"$python" -m lovaszseg.data.download "$dataset" --root "$root"
"$python" -m lovaszseg.check data="$dataset" data.root="$root"
"$python" -m lovaszseg.train -m experiment="paddle_$study" loss="$losses" seed=1,2,3 \
  data.root="$root" hydra.sweep.dir="$sweep" "$@"
"$python" -m lovaszseg.report "$sweep" --baseline "$baseline"
