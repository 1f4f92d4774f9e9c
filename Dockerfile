# One image for every lexdesk process; docker-compose.yml picks the command.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY shared shared
COPY services services
COPY workers workers
COPY emulators emulators
COPY lexdesk lexdesk
COPY migrations migrations
# Editable, so migrations/ is found next to shared/ (shared/migrate.py).
RUN pip install --no-cache-dir -e . && useradd --create-home lexdesk
USER lexdesk
ENTRYPOINT ["lexdesk"]
