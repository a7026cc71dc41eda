# pg-tuner as a container: the policy and the journal live on volumes.
#   docker build -t pg-tuner .
#   docker run -v /etc/pg-tuner:/etc/pg-tuner:ro -v pg-tuner-journal:/var/lib/pg-tuner \
#     -e TUNER_PASSWORD=... pg-tuner run --policy /etc/pg-tuner/app.yaml
FROM python:3.11-slim

RUN useradd --system --home-dir /var/lib/pg-tuner --shell /usr/sbin/nologin pgtuner \
    && mkdir -p /var/lib/pg-tuner /etc/pg-tuner \
    && chown pgtuner:pgtuner /var/lib/pg-tuner

WORKDIR /opt/pg-tuner
COPY pyproject.toml README.md ./
COPY tuner ./tuner
RUN pip install --no-cache-dir .

USER pgtuner
VOLUME ["/etc/pg-tuner", "/var/lib/pg-tuner"]
ENV TUNER_POLICY=/etc/pg-tuner/policy.yaml \
    TUNER_JOURNAL__PATH=/var/lib/pg-tuner/journal.jsonl \
    TUNER_METRICS__LISTEN=0.0.0.0:9187
EXPOSE 9187
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:9187/healthz', timeout=4).status == 200 else 1)"
ENTRYPOINT ["pg-tuner"]
CMD ["run"]
