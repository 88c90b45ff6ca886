"""The Mesos `ContainerInfo` (v1 JSON) of an app's task, and the environment Marathon adds for
containers. Pure functions over a `scheduler.spec.container.ContainerSpec`.

As Marathon builds it for a Docker app: `type: DOCKER`, `docker: {image, network, privileged,
parameters, force_pull_image: false, port_mappings}` (port mappings only for BRIDGE/USER, each
`{host_port, container_port, protocol}`; a containerPort 0 takes the host port's value, as
Marathon does), host-path `volumes` (`{container_path, host_path, mode}`), and for a named
network `network_infos: [{name}]`. A Docker task runs under the command executor (Mesos's
docker executor), never accessd's: `TaskInfo.command` + `TaskInfo.container`.

Environment (Marathon's rules, docs/task-environment-vars.md): `PORT0…`, `PORT`, `PORTS` are the
host ports in every mode; under BRIDGE/USER `PORT_<containerPort>` names the host port mapped to
that container port (the service inside listens on the container port); and
`MARATHON_APP_DOCKER_IMAGE` is the image.
"""

from __future__ import annotations

from typing import Any

from scheduler.spec.container import BRIDGE, HOST, USER, ContainerSpec


def mapped_ports(spec: ContainerSpec, ports: list[int]) -> list[tuple[int, int, str]]:
    """(host port, container port, protocol) of each mapping that has a host port, in the order
    placement assigned `ports` (the spec's port definitions are those mappings)."""
    out = []
    with_host = [m for m in spec.port_mappings if m.host_port is not None]
    for m, host in zip(with_host, ports, strict=False):
        out.append((host, m.container_port or host, m.protocol))
    return out


def container_info(spec: ContainerSpec, ports: list[int]) -> dict[str, Any]:
    info: dict[str, Any] = {"type": spec.type}
    if spec.volumes:
        info["volumes"] = [{"container_path": v.container_path, "host_path": v.host_path,
                            "mode": v.mode} for v in spec.volumes]
    if not spec.docker:
        return info
    docker: dict[str, Any] = {"image": spec.image, "network": spec.network,
                              "privileged": spec.privileged, "force_pull_image": False}
    if spec.parameters:
        docker["parameters"] = [{"key": k, "value": v} for k, v in spec.parameters]
    if spec.network in (BRIDGE, USER):
        docker["port_mappings"] = [{"host_port": h, "container_port": c, "protocol": p}
                                   for h, c, p in mapped_ports(spec, ports)]
    info["docker"] = docker
    if spec.network == USER:
        info["network_infos"] = [{"name": spec.network_name}]
    return info


def container_env(spec: ContainerSpec, ports: list[int], env: dict[str, str]) -> dict[str, str]:
    """`env` (scheduler.tasks.task_env's) with Marathon's container variables applied."""
    out = dict(env)
    if spec.docker and spec.image:
        out["MARATHON_APP_DOCKER_IMAGE"] = spec.image
    if spec.network != HOST:
        with_host = [m for m in spec.port_mappings if m.host_port is not None]
        for m in with_host:  # task_env named these after the host port asked for
            if m.host_port and m.host_port != m.container_port:
                out.pop(f"PORT_{m.host_port}", None)
        for host, container, _ in mapped_ports(spec, ports):
            out[f"PORT_{container}"] = str(host)
    return out
