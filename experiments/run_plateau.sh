#!/usr/bin/env bash
# A usage-mode study at a plateau, on CPU, in the paper's and PaddleSeg's finetune design:
#   phase 1: the baseline (bce / ce) trained to its plateau once per seed;
#   phase 2, the restart arm: each mode continued from its seed's baseline for the same number
#            of steps with a fresh optimizer (baseline -> baseline is the control that gets the
#            same extra steps);
#   phase 3, the continued arm: each mode resumes its seed's baseline from the branch checkpoint
#            a phase-2 length before its end (the optimizer's state, the tail of its schedule):
#            only the loss changes, and baseline -> baseline is the baseline's own ending;
# then the reports into experiments/{roads|voc}_modes/: the restart arm at the top, phase 1 in
# baseline/, both arms side by side in arms/.
#   bash experiments/run_plateau.sh {roads|voc} [train overrides for every phase...]
# SEEDS=1,2,3 by default; REPORT_ONLY=1 only copies the runs so far and reports them. Rerunning
# the same command resumes: finished runs are skipped and a killed one continues from its
# last.ckpt (auto_resume), so a stopped study completes by rerunning.
set -euo pipefail
cd "$(dirname "$0")/.."
usage="usage: run_plateau.sh {roads|voc} [train overrides...]"
study=${1:?$usage}
shift
case "$study" in
  roads) baseline=bce ;;
  voc) baseline=ce ;;
  *) echo "run_plateau.sh: unknown study '$study' (expected roads or voc)" >&2; exit 2 ;;
esac
python=${PYTHON:-python}
seeds=${SEEDS:-1,2,3}
sweeps=${SWEEP_DIR:-multirun/${study}_plateau}
out=${OUT_DIR:-experiments/${study}_modes}

finished() {  # finished RESULTS_FILE...: every file exists and says completed
  for file in "$@"; do grep -qs '"status": "completed"' "$file" || return 1; done
}
IFS=, read -ra seed_list <<< "$seeds"
if [ -z "${REPORT_ONLY:-}" ]; then
# Phase 1: one job per seed, in <sweeps>/baseline/seed<N>; finished seeds are skipped.
todo=()
for seed in "${seed_list[@]}"; do
  finished "$sweeps/baseline/seed$seed/results.json" || todo+=("$seed")
done
if [ ${#todo[@]} -gt 0 ]; then
  "$python" -m lovaszseg.train -m experiment="${study}_plateau" seed="$(IFS=,; echo "${todo[*]}")" \
    auto_resume=true hydra.sweep.dir="$sweeps/baseline" 'hydra.sweep.subdir=seed${seed}' "$@"
fi
# Phase 2: per seed, one job per mode in <sweeps>/modes/seed<N>/<job>, all from that seed's
# baseline; a seed whose four modes finished is skipped, a killed mode resumes.
for seed in "${seed_list[@]}"; do
  finished "$sweeps/modes/seed$seed"/{0,1,2,3}/results.json && continue
  "$python" -m lovaszseg.train -m experiment="${study}_plateau_modes" seed="$seed" \
    auto_resume=true hydra.sweep.dir="$sweeps/modes/seed$seed" 'hydra.sweep.subdir=${hydra.job.num}' \
    init_from="$sweeps/baseline/seed$seed/checkpoints/last.ckpt" "$@"
done
# Phase 3: per seed, one job per mode in <sweeps>/continued/seed<N>/<job>. A killed job starts
# its tail again from the branch checkpoint (ckpt_path wins over auto_resume).
for seed in "${seed_list[@]}"; do
  finished "$sweeps/continued/seed$seed"/{0,1,2,3}/results.json && continue
  "$python" -m lovaszseg.train -m experiment="${study}_plateau_continued" seed="$seed" \
    hydra.sweep.dir="$sweeps/continued/seed$seed" 'hydra.sweep.subdir=${hydra.job.num}' \
    ckpt_path="$sweeps/baseline/seed$seed/checkpoints/branch.ckpt" "$@"
done
fi

# Keep each run's light files (metrics, results, Hydra config) beside the reports, so that they
# can be remade from the repository alone; checkpoints stay in the sweep dirs.
rm -rf "$out/runs"
for job in "$sweeps"/baseline/seed*/ "$sweeps"/{modes,continued}/seed*/[0-9]*/; do
  [ -f "$job/results.json" ] || continue
  dest="$out/runs/${job#"$sweeps"/}"
  mkdir -p "$dest"
  cp -r "$job/metrics.csv" "$job/results.json" "$job/.hydra" "$dest/"
done
mkdir -p "$out/baseline"
"$python" -m lovaszseg.report "$out/runs/baseline" --baseline "$baseline" --out "$out/baseline"
"$python" -m lovaszseg.report "$out/runs/modes" --baseline "$baseline → $baseline" --out "$out"
# Both arms side by side in <out>/arms/: each arm a panel with its own control, every mode also
# against its seed's baseline where it stopped, p corrected across the modes (Holm).
if [ -d "$out/runs/continued" ]; then
  mkdir -p "$out/arms"
  "$python" -m lovaszseg.report "$out/runs/modes" "$out/runs/continued" \
    --baseline "$baseline → $baseline" --continued-from "$out/runs/baseline" --holm --out "$out/arms"
fi
