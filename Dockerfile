# lovaszseg training image: CUDA runtime, Python, PyTorch from PyPI (CUDA 12 wheels) and this
# package with its SLURM extra. Arguments go to `python -m lovaszseg.train`:
#   docker build -t lovaszseg .
#   docker run --gpus all --shm-size=8g -v $PWD/data:/app/data -v $PWD/outputs:/app/outputs \
#     lovaszseg trainer=gpu
FROM nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04

ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    NO_ALBUMENTATIONS_UPDATE=1 \
    WANDB_MODE=offline \
    LOVASZSEG_CACHE_DIR=/opt/lovaszseg

# libgl1 / libglib2.0-0: OpenCV (albumentations) needs them even headless; gcc builds the
# losses' fused CPU kernel (lovaszseg/losses/_native.c) into the installed package (setup.py).
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-pip python3-venv libgl1 libglib2.0-0 gcc \
    && rm -rf /var/lib/apt/lists/*

# Installed from /src, run from /app: a source tree in the working directory would shadow the
# installed package, whose `lovaszseg.conf` (the configs) exists only in the installed layout.
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY lovaszseg ./lovaszseg
COPY conf ./conf
RUN python3 -m pip install ".[slurm]"
WORKDIR /app
RUN python3 -c "import lovaszseg.train, lovaszseg.eval, lovaszseg.conf" \
    && python3 -c "from lovaszseg.losses import native; assert native.library().path.name.startswith('_lovasz_openmp')"

# Runs write outputs/ and read data/ relative to /app; mount both.
VOLUME ["/app/data", "/app/outputs"]
ENTRYPOINT ["python3", "-m", "lovaszseg.train"]
