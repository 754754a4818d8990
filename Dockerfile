# One image for every role of the distributed stack; the role is chosen by the command:
#   provenance serve --role relay|projections|generator|moderation|signing
#
#   docker build --target cpu -t provenance:latest .    relay, projections, moderation, signing (CPU torch)
#   docker build --target gpu -t provenance:gpu .       generator workers on NVIDIA hosts (CUDA torch,
#                                                       onnxruntime-gpu in place of onnxruntime)
#
# No model weights are baked in: mount them and point the configuration at their paths.

ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim-bookworm AS source
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY kernel ./kernel
COPY devkit ./devkit
COPY provenance ./provenance
COPY schemas ./schemas
COPY projections ./projections
COPY generator ./generator
COPY moderation ./moderation

FROM source AS runtime-base
ARG EXTRAS=postgres,kafka,video,generator,c2pa,ml
RUN groupadd --system provenance \
    && useradd --system --gid provenance --home-dir /data --shell /usr/sbin/nologin provenance \
    && mkdir -p /data \
    && chown provenance:provenance /data
ENV PROVENANCE_HOME=/data

FROM runtime-base AS cpu
# The CPU build of torch: the default PyPI wheel carries CUDA libraries these roles never load.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch torchvision \
    && pip install "/src[${EXTRAS}]" \
    && provenance --help >/dev/null
USER provenance
WORKDIR /data
VOLUME ["/data"]
CMD ["provenance", "--help"]

FROM runtime-base AS gpu
# onnxruntime and onnxruntime-gpu install the same module; keep only the GPU one.
RUN pip install "/src[${EXTRAS},gpu]" \
    && pip uninstall -y onnxruntime \
    && pip install --force-reinstall --no-deps "onnxruntime-gpu>=1.17" \
    && provenance --help >/dev/null
USER provenance
WORKDIR /data
VOLUME ["/data"]
CMD ["provenance", "--help"]
