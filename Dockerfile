# One image for every callmap component; the command picks the component.
# (The deploy issue hardens it: non-root user per component, the BPF program,
# sizes from the benchmarks.)
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY callmap ./callmap
COPY capture ./capture
COPY streams ./streams
COPY sinks ./sinks
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
ENTRYPOINT ["callmap"]
CMD ["--help"]
