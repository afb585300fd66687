FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY bridge ./bridge
COPY schemas ./schemas
COPY consumers ./consumers
COPY simulator ./simulator
RUN pip install --no-cache-dir .
USER nobody
ENTRYPOINT ["xueji"]
CMD ["run"]
