FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 DATA_DIR=/data
RUN apt-get update && apt-get install -y --no-install-recommends iproute2 procps && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml ./
RUN pip install --no-cache-dir -e . 2>/dev/null || true
COPY . .
RUN pip install --no-cache-dir -e . \
 && SECRET_KEY=build-only PREVIEW_SIGNING_KEY=build-only DATA_DIR=/tmp/build python manage.py collectstatic --noinput
EXPOSE 8000
VOLUME /data
CMD ["sh", "-c", "python manage.py migrate --noinput && python manage.py serve --port 8000"]
