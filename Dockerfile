# zbox-workers image: Node 24 on Debian slim, production dependencies only, non-root, and the
# CLI as an exec-form entrypoint so SIGTERM reaches Node directly.
# Build: docker build -t zbox-workers:$(node -p "require('./package.json').version") .

FROM node:24-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# Install scripts are skipped: none is needed to build, and the embedded PostgreSQL they would
# prepare is for laptops and tests, not for the image.
RUN npm ci --ignore-scripts
COPY tsconfig.json tsconfig.build.json ./
COPY bin ./bin
COPY src ./src
RUN npm run build && npm prune --omit=dev --ignore-scripts

FROM node:24-slim
ENV NODE_ENV=production \
    TMPDIR=/tmp
WORKDIR /app
COPY --from=build --chown=root:root /app/package.json ./package.json
COPY --from=build --chown=root:root /app/node_modules ./node_modules
COPY --from=build --chown=root:root /app/dist ./dist
COPY --from=build --chown=root:root /app/bin ./bin
# The files belong to root and are read-only to the runtime user, which matches a read-only
# root filesystem; temporary files go to /tmp, mounted as an emptyDir in Kubernetes.
USER 1000:1000
ENTRYPOINT ["node", "/app/bin/zbox-workers"]
CMD ["--help"]
