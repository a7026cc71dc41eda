# pg-tuner as a container: the policy and the journal live on volumes.
#   docker build -t pg-tuner .
#   docker run -d --name pg-tuner-app --stop-timeout 90 \
#     -v /etc/pg-tuner:/etc/pg-tuner:ro -v pg-tuner-journal:/var/lib/pg-tuner \
#     -e TUNER_POLICY=/etc/pg-tuner/app.yaml -e TUNER_PASSWORD -p 127.0.0.1:8187:8187 pg-tuner
# The password: TUNER_PASSWORD, or a mounted secret file named by target.password_file.
# --stop-timeout must outlast the policy's timeouts.shutdown_grace (default 60s): on SIGTERM
# a running build may finish for that long, then it is cancelled and cleaned up.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --system --home-dir /var/lib/pg-tuner --shell /usr/sbin/nologin pg-tuner \
    && mkdir -p /var/lib/pg-tuner /etc/pg-tuner \
    && chown pg-tuner:pg-tuner /var/lib/pg-tuner \
    && chmod 0750 /var/lib/pg-tuner

# The same layout as the systemd unit: /opt/pg-tuner/.venv/bin/pg-tuner
WORKDIR /opt/pg-tuner
RUN python -m venv /opt/pg-tuner/.venv
COPY pyproject.toml README.md ./
COPY tuner ./tuner
RUN /opt/pg-tuner/.venv/bin/pip install . && rm -rf /opt/pg-tuner/tuner /opt/pg-tuner/build
ENV PATH=/opt/pg-tuner/.venv/bin:$PATH

USER pg-tuner
VOLUME ["/etc/pg-tuner", "/var/lib/pg-tuner"]
# The policy's journal.path and metrics.listen are overridden for the container's layout:
# the journal on its volume, metrics on all interfaces of the container (publish with -p).
ENV TUNER_POLICY=/etc/pg-tuner/policy.yaml \
    TUNER_JOURNAL__PATH=/var/lib/pg-tuner/journal.jsonl \
    TUNER_METRICS__LISTEN=0.0.0.0:8187
EXPOSE 8187
STOPSIGNAL SIGTERM
# 200 while the last cycle succeeded recently and the database answered; 503 with the reason.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request as u; sys.exit(0 if u.urlopen('http://127.0.0.1:8187/healthz', timeout=4).status == 200 else 1)"]
ENTRYPOINT ["pg-tuner"]
CMD ["run"]
