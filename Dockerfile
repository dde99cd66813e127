# Telltale production image: the same image runs web, worker, beat and listeners.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    TELLTALE_VAR_DIR=/var/lib/telltale

WORKDIR /app
RUN useradd --system --home /var/lib/telltale --create-home telltale

# torch first, from the CPU index, so no CUDA build is pulled in.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY . .
RUN mkdir -p /var/lib/telltale /tmp/telltale-metrics && chown -R telltale /var/lib/telltale /tmp/telltale-metrics
USER telltale
EXPOSE 8000 5514/udp 5514/tcp

CMD ["gunicorn", "webapp.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "4", "--threads", "8", "--timeout", "120", "--max-requests", "20000", "--max-requests-jitter", "2000"]
