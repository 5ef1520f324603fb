# The hookstream image: one image, three roles (ingress, worker, one-shot setup).
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends git && rm -rf /var/lib/apt/lists/*
WORKDIR /srv/hookstream
COPY pyproject.toml README.md constraints.txt ./
COPY app ./app
COPY topics ./topics
COPY schemas ./schemas
# constraints.txt: the exact Faust and aiokafka the worker's patches are written against, and the
# rest at the versions CI ran (the worker refuses to start on a Faust its patches do not fit).
RUN pip install --no-cache-dir -c constraints.txt -e '.[github]'
ENV HOOKSTREAM_TOPICS_DIR=/srv/hookstream/topics \
    HOOKSTREAM_WORKER_DATA_DIR=/var/lib/hookstream
VOLUME /var/lib/hookstream
ENTRYPOINT ["hookstream"]
