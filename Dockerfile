# Nullspace Console in one container: console, /v1, preview gateway, worker and the local
# sandbox runtime (docs/runtime.md).
#
# Privileges: the local runtime creates namespaces, veth pairs, cgroups and overlay mounts for
# every sandbox, so the container must run as root with those powers:
#   docker run --privileged --cgroupns=host -p 8000:8000 -v nullspace-data:/data IMAGE
# (at least CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_SYS_PTRACE, a writable /sys/fs/cgroup and
# user namespaces). Without them, set RUNTIME_ISOLATION=none only for a single trusted team:
# sandboxes then run as processes of the container.
FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 DATA_DIR=/data
RUN apt-get update \
 && apt-get install -y --no-install-recommends iproute2 procps e2fsprogs mount \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
# The locked, hash-checked product dependencies first (a layer that survives code changes).
COPY requirements/base.txt requirements/base.txt
RUN pip install --no-cache-dir --require-hashes -r requirements/base.txt
COPY . .
RUN SECRET_KEY=build-only PREVIEW_SIGNING_KEY=build-only DATA_DIR=/tmp/build \
    python manage.py collectstatic --noinput -v 0 && rm -rf /tmp/build
EXPOSE 8000
VOLUME /data
CMD ["sh", "-c", "python manage.py migrate --noinput && python manage.py serve --port 8000"]
