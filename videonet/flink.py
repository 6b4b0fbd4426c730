"""Flink for the curation: Beam's Flink job server, a Flink distribution, and a one-machine cluster.

``python -m videonet.flink install`` (run by ``install.sh``) puts Beam's Flink job server into a cache
with Maven: the runner artifact of the installed Beam version when Maven Central serves it, else the
newest runner release it serves whole (Beam's Python SDK talks to an older Java job server over the
portable Fn API), as a manifest jar whose class path lists the resolved dependency jars. That is the
jar ``--runner FlinkRunner`` gets by default (``videonet.pipelines.runners.beam_flags``); for the
embedded Flink, :func:`embedded_job_server` runs it for the length of one pipeline.

``python -m videonet.flink cluster start|stop|status|revive`` runs a standalone Flink session cluster on this
machine: a JobManager and N TaskManagers, each its own process, started straight from the official
Flink jars (PyPI's ``apache-flink-libraries`` wheel, installed with ``--no-deps`` into the cache so
that its pins never touch this environment). Each TaskManager starts its SDK workers as processes of
their own (Beam's PROCESS environment) through :func:`boot`, the Python stand-in for the boot binary
of Beam's SDK container. ``start`` prints the Beam flags that submit to it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from videonet.errors import UserError

FLINK_VERSION = "1.19"  # the newest Flink whose Beam runner Maven Central serves here with all its dependencies
FLINK_DIST = "1.19.3"  # apache-flink-libraries on PyPI: flink-dist and Flink's lib/ jars
FALLBACK_RUNNER = "2.62.0"  # the newest beam-runners-flink-1.19 whose dependencies all resolve on Maven Central
JOB_SERVER_MAIN = "org.apache.beam.runners.flink.FlinkJobServerDriver"
# Flink on Java 17 reflects into these packages (Flink's own scripts pass the same --add-opens).
OPENS = ["java.base/java.lang", "java.base/java.lang.reflect", "java.base/java.io", "java.base/java.net",
         "java.base/java.nio", "java.base/sun.nio.ch", "java.base/java.text", "java.base/java.time",
         "java.base/java.util", "java.base/java.util.concurrent", "java.base/java.util.concurrent.atomic",
         "java.base/java.util.concurrent.locks"]

POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>videonet</groupId><artifactId>flink-job-server</artifactId><version>1</version>
  <dependencies><dependency>
    <groupId>org.apache.beam</groupId><artifactId>beam-runners-flink-{flink}</artifactId><version>{beam}</version>
  </dependency></dependencies>
</project>
"""


def cache_dir() -> Path:
    """``$VIDEONET_CACHE/flink`` (default ``~/.cache/videonet/flink``)."""
    return Path(os.environ.get("VIDEONET_CACHE", Path.home() / ".cache" / "videonet")).expanduser() / "flink"


def _runner_versions() -> list[str]:
    import apache_beam

    return list(dict.fromkeys([apache_beam.__version__, FALLBACK_RUNNER]))


def job_server_jar() -> Path:
    """The installed job server jar (the installed Beam's own when there is one), or a one-line error."""
    for version in _runner_versions():
        jar = cache_dir() / f"job-server-{version}-flink-{FLINK_VERSION}" / "job-server.jar"
        if jar.exists():
            return jar
    raise UserError(f"no Flink job server in {cache_dir()}: run `bash install.sh` or `python -m videonet.flink install`")


def _manifest(attributes: dict[str, str]) -> str:
    """A jar manifest: lines wrapped at 72 bytes, continuations starting with a space."""
    lines = ["Manifest-Version: 1.0"]
    for key, value in attributes.items():
        text = f"{key}: {value}"
        lines.append(text[:72])
        lines += [" " + text[i:i + 71] for i in range(72, len(text), 71)]
    return "\r\n".join(lines) + "\r\n\r\n"


def install_job_server() -> Path:
    """Resolve the Flink runner and its dependencies with ``mvn`` and write a launcher jar (idempotent)."""
    try:
        return job_server_jar()
    except UserError:
        pass
    if shutil.which("mvn") is None:
        raise UserError("mvn not found: install Maven (apt-get install maven) to fetch the Flink job server")
    failures = []
    for version in _runner_versions():
        home = cache_dir() / f"job-server-{version}-flink-{FLINK_VERSION}"
        home.mkdir(parents=True, exist_ok=True)
        (home / "pom.xml").write_text(POM.format(flink=FLINK_VERSION, beam=version))
        proc = subprocess.run(["mvn", "-q", "-B", "-f", str(home / "pom.xml"), "dependency:copy-dependencies",
                               "-DincludeScope=runtime", f"-DoutputDirectory={home / 'lib'}"],
                              capture_output=True, text=True)
        if proc.returncode:
            failures.append(f"{version}: {(proc.stdout + proc.stderr).strip().splitlines()[-1:]}")
            shutil.rmtree(home)
            continue
        jars = sorted(p.name for p in (home / "lib").glob("*.jar"))
        tmp = home / "job-server.jar.tmp"
        with zipfile.ZipFile(tmp, "w") as jar:  # the jar is only a manifest: main class, class path, --add-opens
            jar.writestr("META-INF/MANIFEST.MF", _manifest({
                "Main-Class": JOB_SERVER_MAIN, "Class-Path": " ".join(f"lib/{name}" for name in jars),
                "Add-Opens": " ".join(OPENS)}))
        tmp.rename(home / "job-server.jar")
        return home / "job-server.jar"
    raise UserError("could not fetch Beam's Flink runner with mvn: " + "; ".join(failures))


def install_distribution() -> Path:
    """Flink's jars (``lib/flink-dist-*.jar`` ...) from PyPI into the cache, without touching this environment."""
    home = cache_dir() / f"flink-{FLINK_DIST}"
    lib = home / "pyflink" / "lib"
    if not list(lib.glob("flink-dist-*.jar")):
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--root-user-action=ignore", "--target", str(home),
                        f"apache-flink-libraries=={FLINK_DIST}"], check=True)
    return home / "pyflink"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("localhost", port), timeout=1).close()
        return True
    except OSError:
        return False


@contextlib.contextmanager
def embedded_job_server(timeout: float = 120.0) -> Iterator[str]:
    """Beam's Flink job server running an embedded Flink (``[local]``) for the length of the block:
    yields its endpoint (``--job_endpoint``), then stops the JVM.

    Beam's own launcher keeps that JVM until the Python process exits, so the largest process of a
    run (its heap grows to the JVM's default, a quarter of the machine's memory: 5.9 GB at 5M rows)
    stayed resident through the report that follows the pipeline. Its output goes to this module's
    logger, as Beam's launcher logs it.
    """
    port = _free_port()
    log = logging.getLogger(__name__)
    with tempfile.TemporaryDirectory(prefix="videonet-flink-artifacts-") as artifacts:
        server = subprocess.Popen(["java", "-jar", str(job_server_jar()), "--flink-master", "[local]",
                                   "--job-port", str(port), "--artifact-port", "0", "--expansion-port", "0",
                                   "--artifacts-dir", artifacts], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        threading.Thread(target=lambda: [log.info(line.decode(errors="replace").rstrip()) for line in server.stdout],
                         daemon=True).start()
        try:
            deadline = time.monotonic() + timeout
            while not _listening(port):
                if server.poll() is not None or time.monotonic() > deadline:
                    raise UserError(f"the Flink job server did not start (exit status {server.poll()}): "
                                    f"see the log of {__name__}")
                time.sleep(0.2)
            yield f"localhost:{port}"
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


@dataclass
class Cluster:
    """A standalone Flink session cluster on this machine, its processes recorded in ``home/cluster.json``."""

    home: Path
    taskmanagers: int = 2
    slots: int = 1
    taskmanager_mb: int = 2048
    pids: dict[str, int] = field(default_factory=dict)
    rest_port: int = 0

    @property
    def flags(self) -> list[str]:
        """Beam flags that run a pipeline on this cluster, each SDK worker its own process."""
        return [f"--flink_master=localhost:{self.rest_port}", f"--parallelism={self.taskmanagers * self.slots}",
                "--environment_type=PROCESS",
                "--environment_config=" + json.dumps({"command": str(self.home / "sdk-worker")})]

    def _conf(self) -> Path:
        conf = self.home / "conf"
        conf.mkdir(parents=True, exist_ok=True)
        settings = {
            "jobmanager.rpc.address": "localhost", "jobmanager.rpc.port": _free_port(),
            "jobmanager.bind-host": "localhost", "rest.address": "localhost", "rest.bind-address": "localhost",
            "rest.port": self.rest_port, "taskmanager.host": "localhost", "taskmanager.bind-host": "localhost",
            "jobmanager.memory.process.size": "1024m", "taskmanager.memory.process.size": f"{self.taskmanager_mb}m",
            "taskmanager.numberOfTaskSlots": self.slots, "taskmanager.memory.managed.fraction": 0.2,
            # Beam's batch graph has many blocking shuffles: the default network memory (10%) runs out
            "taskmanager.memory.network.min": "384m", "taskmanager.memory.network.max": "384m", "parallelism.default": self.taskmanagers * self.slots,
            "io.tmp.dirs": str(self.home / "tmp"), "blob.server.port": "0",
            # a TaskManager that dies fails its job at once instead of after the default 50 s heartbeat wait
            "heartbeat.timeout": 15000, "heartbeat.interval": 3000,
        }
        (self.home / "tmp").mkdir(exist_ok=True)
        (conf / "flink-conf.yaml").write_text("".join(f"{k}: {v}\n" for k, v in settings.items()))
        return conf

    def _java(self, dist: Path, conf: Path, kind: str, main: str, extra: list[str]) -> list[str]:
        """The JVM command of a JobManager or TaskManager, with the memory flags Flink's scripts compute."""
        classpath = f"{dist / 'bin' / 'bash-java-utils.jar'}:{dist / 'lib'}/*"
        proc = subprocess.run(["java", "-cp", classpath, "org.apache.flink.runtime.util.bash.BashJavaUtils",
                               f"GET_{kind}_RESOURCE_PARAMS", "--configDir", str(conf)],
                              capture_output=True, text=True, check=True)
        jvm, dynamic = [line.split(":", 1)[1].split() for line in proc.stdout.splitlines()
                        if line.startswith("BASH_JAVA_UTILS_EXEC_RESULT:")][:2]
        opens = [f"--add-opens={module}=ALL-UNNAMED" for module in OPENS]
        return ["java", *opens, *jvm, "-cp", f"{dist / 'lib'}/*", main, "--configDir", str(conf), *dynamic, *extra]

    def _spawn(self, name: str, command: list[str]) -> None:
        with open(self.home / f"{name}.log", "wb") as log:
            self.pids[name] = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                               start_new_session=True).pid

    def _command(self, name: str, dist: Path, conf: Path) -> list[str]:
        """The JVM command of the process ``name``: ``jobmanager`` or ``taskmanager-<i>``."""
        if name == "jobmanager":
            return self._java(dist, conf, "JM", "org.apache.flink.runtime.entrypoint.StandaloneSessionClusterEntrypoint", [])
        return self._java(dist, conf, "TM", "org.apache.flink.runtime.taskexecutor.TaskManagerRunner",
                          ["-D", f"taskmanager.resource-id=tm-{name.rsplit('-', 1)[1]}"])

    def start(self, timeout: float = 120.0) -> "Cluster":
        """Start the JobManager and the TaskManagers; wait until all their slots have registered."""
        dist = install_distribution()
        self.home.mkdir(parents=True, exist_ok=True)
        self.rest_port = self.rest_port or _free_port()
        conf = self._conf()
        worker = self.home / "sdk-worker"  # what the PROCESS environment runs: one executable, no arguments of ours
        worker.write_text(f"#!/bin/sh\nexec {sys.executable} -m videonet.flink boot \"$@\"\n")
        worker.chmod(0o755)
        for name in ["jobmanager", *(f"taskmanager-{i}" for i in range(self.taskmanagers))]:
            self._spawn(name, self._command(name, dist, conf))
        self._save()
        self._wait_for_slots(timeout)
        return self

    def revive(self, timeout: float = 120.0) -> list[str]:
        """Start again, with the configuration they had, the processes of the cluster that are gone (a
        TaskManager SIGKILLed or OOM-killed), as a supervisor (systemd, Kubernetes) does for a real
        cluster; wait until every slot has registered again. Returns the names restarted."""
        dead = [name for name, pid in self.pids.items() if not _running(pid)]
        for name in dead:
            self._spawn(name, self._command(name, install_distribution(), self.home / "conf"))
        self._save()
        self._wait_for_slots(timeout)
        return dead

    def _save(self) -> None:
        (self.home / "cluster.json").write_text(json.dumps(
            {"pids": self.pids, "rest_port": self.rest_port, "taskmanagers": self.taskmanagers, "slots": self.slots}))

    def _wait_for_slots(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.registered_slots() < self.taskmanagers * self.slots:
            if time.monotonic() > deadline or not self.alive():
                self.stop()
                raise RuntimeError(f"Flink cluster did not start: see the logs in {self.home}")
            time.sleep(1)

    def registered_slots(self) -> int:
        try:
            with urllib.request.urlopen(f"http://localhost:{self.rest_port}/overview", timeout=5) as reply:
                return json.load(reply)["slots-total"]
        except OSError:
            return 0

    def alive(self) -> bool:
        return all(_running(pid) for pid in self.pids.values())

    def stop(self) -> None:
        """SIGTERM every process of the cluster (its whole session: SDK workers too), then SIGKILL."""
        for pid in self.pids.values():
            if _running(pid):
                os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while any(_running(pid) for pid in self.pids.values()) and time.monotonic() < deadline:
            time.sleep(0.2)
        for pid in self.pids.values():
            if _running(pid):
                os.killpg(pid, signal.SIGKILL)
        (self.home / "cluster.json").unlink(missing_ok=True)

    @classmethod
    def load(cls, home: Path) -> "Cluster":
        try:
            state = json.loads((home / "cluster.json").read_text())
        except FileNotFoundError:
            raise UserError(f"no Flink cluster started from {home}") from None
        return cls(home, state["taskmanagers"], state["slots"], pids=state["pids"], rest_port=state["rest_port"])

    def __enter__(self) -> "Cluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _running(pid: int) -> bool:
    """Whether ``pid`` is a live process of ours (a zombie child counts as gone)."""
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
        return waited == 0
    except ChildProcessError:  # not our child (the cluster was started by another command)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


def boot(argv: list[str]) -> None:
    """Start one SDK worker as the boot binary of Beam's SDK container does: ask the provision service
    for the pipeline options and endpoints, then run the Python SDK harness (artifacts: none are staged,
    videonet is installed where the TaskManagers run)."""
    import grpc
    from apache_beam.portability.api import beam_provision_api_pb2, beam_provision_api_pb2_grpc
    from apache_beam.runners.worker import sdk_worker_main
    from google.protobuf import json_format, text_format

    parser = argparse.ArgumentParser()
    for name in ("id", "provision_endpoint", "logging_endpoint", "control_endpoint", "artifact_endpoint",
                 "semi_persistent_directory"):
        parser.add_argument(f"--{name}")
    args, _ = parser.parse_known_args(argv)
    with grpc.insecure_channel(args.provision_endpoint) as channel:
        info = beam_provision_api_pb2_grpc.ProvisionServiceStub(channel).GetProvisionInfo(
            beam_provision_api_pb2.GetProvisionInfoRequest(), metadata=[("worker_id", args.id)]).info
    os.environ.update({
        "WORKER_ID": args.id, "PIPELINE_OPTIONS": json_format.MessageToJson(info.pipeline_options),
        "CONTROL_API_SERVICE_DESCRIPTOR": text_format.MessageToString(info.control_endpoint),
        "LOGGING_API_SERVICE_DESCRIPTOR": text_format.MessageToString(info.logging_endpoint),
        "RUNNER_CAPABILITIES": " ".join(info.runner_capabilities)})
    if args.semi_persistent_directory:
        os.environ["SEMI_PERSISTENT_DIRECTORY"] = args.semi_persistent_directory
    sdk_worker_main.main([])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m videonet.flink", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("install", help="Fetch the job server (mvn) and Flink's jars (pip) into the cache.")
    commands.add_parser("boot", help="Start one SDK worker (run by the PROCESS environment, with its flags).")
    cluster = commands.add_parser("cluster", help="A standalone Flink cluster on this machine.")
    cluster.add_argument("action", choices=["start", "stop", "status", "revive"],
                         help="revive: restart the processes of a started cluster that died (a killed TaskManager).")
    cluster.add_argument("--home", type=Path, default=cache_dir() / "cluster", help="Config, logs and pids.")
    cluster.add_argument("--taskmanagers", type=int, default=2)
    cluster.add_argument("--slots", type=int, default=1, help="Task slots per TaskManager.")
    cluster.add_argument("--taskmanager-mb", type=int, default=2048, help="Process memory of each TaskManager.")
    args, rest = parser.parse_known_args(argv)
    if args.command == "boot":
        return boot(rest)
    try:
        if args.command == "install":
            print(f"flink job server: {install_job_server()}\nflink distribution: {install_distribution()}")
        elif args.action == "start":
            cluster = Cluster(args.home, args.taskmanagers, args.slots, args.taskmanager_mb).start()
            print(f"flink cluster up: web UI http://localhost:{cluster.rest_port}, pids {cluster.pids}")
            print("submit with: videonet curate ... --runner FlinkRunner -- " + shlex.join(cluster.flags))
        elif args.action == "revive":
            print(f"restarted: {', '.join(Cluster.load(args.home).revive()) or 'nothing, every process is up'}")
        elif args.action == "stop":
            Cluster.load(args.home).stop()
            print("flink cluster stopped")
        else:
            cluster = Cluster.load(args.home)
            print(f"{'up' if cluster.alive() else 'partly down'}: pids {cluster.pids}, "
                  f"{cluster.registered_slots()} slots; flags: {' '.join(cluster.flags)}")
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
