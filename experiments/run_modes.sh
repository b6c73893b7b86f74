#!/usr/bin/env bash
# A usage-mode study on synthetic data, on CPU: the hard setting with all four modes (baseline,
# direct, combined, finetune), the easy setting beside it (baseline vs combined), 3 seeds each,
# then the report into experiments/{roads|voc}_modes/early/.
#   bash experiments/run_modes.sh {roads|voc} [train overrides, e.g. trainer.max_epochs=10]
# Each run trains 6 epochs on 192 px crops: the whole study takes about an hour on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/.."
usage="usage: run_modes.sh {roads|voc} [train overrides...]"
study=${1:?$usage}
shift
case "$study" in
  roads) dataset=synthetic_roads baseline=bce easy_losses=bce,lovasz_hinge_bce ;;
  voc) dataset=synthetic_voc baseline=ce easy_losses=ce,lovasz_softmax_ce ;;
  *) echo "run_modes.sh: unknown study '$study' (expected roads or voc)" >&2; exit 2 ;;
esac
python=${PYTHON:-python}
sweeps=${SWEEP_DIR:-multirun/${study}_modes}
budget=(data.crop_size=192 trainer.max_epochs=6 seed=1,2,3)

for difficulty in hard easy; do
  losses=()
  [ "$difficulty" = easy ] && losses=(loss="$easy_losses")
  # One data root per difficulty: the two settings never regenerate each other's files.
  "$python" -m lovaszseg.train -m experiment="${study}_modes" "${budget[@]}" "${losses[@]}" \
    data.synthetic.difficulty="$difficulty" data.root="\${paths.data_dir}/${dataset}_$difficulty" \
    hydra.sweep.dir="$sweeps/$difficulty" "$@"
done
# Keep each run's light files (metrics, results, Hydra config) beside the report, so the
# report can be remade from the repository alone; checkpoints stay in the sweep dirs.
out="experiments/${study}_modes/early"
rm -rf "$out/runs"
for job in "$sweeps"/*/[0-9]*/; do
  dest="$out/runs/$(basename "$(dirname "$job")")/$(basename "$job")"
  mkdir -p "$dest"
  cp -r "$job/metrics.csv" "$job/results.json" "$job/.hydra" "$dest/"
done
"$python" -m lovaszseg.report "$out/runs" --by data.synthetic.difficulty --baseline "$baseline" \
  --out "$out"
