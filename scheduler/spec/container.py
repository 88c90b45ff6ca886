"""Marathon's `container` (and the `networks` that choose its network mode): the DOCKER
containers this cluster runs, and `MESOS` without an image (the same as no container).

Follows Marathon 1.5+'s app JSON (RAML `Container`, `DockerContainer`, `ContainerPortMapping`,
`AppVolume`, `Network`) and its legacy forms (`docker.network`, `docker.portMappings`):
- `type` DOCKER needs `docker.image`; MESOS with an image (the universal containerizer's image
  provisioner), `appc`, `linuxInfo`, `pullConfig`, persistent and external volumes are refused
  with the reason; `forcePullImage: true` is refused (no registry reachable: images are built on
  the agents, `accessd image build`).
- network modes: `host` (HOST, the default), `container/bridge` (BRIDGE: `portMappings`, host
  ports from the offer for `hostPort` 0), `container` with a `name` (USER: a Docker network of
  that name on the agents; host ports only where `hostPort` is given, as Marathon does).
- `portMappings` need a bridge or container network; `portDefinitions` need host networking.

Parsed into a frozen `ContainerSpec`; `to_json()` gives Marathon's 1.5 output form.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from scheduler.spec.fields import (
    MISSING,
    Errors,
    boolean,
    check_unknown,
    integer,
    ptr,
    str_map,
    string,
    type_name,
)
from scheduler.spec.model import FrozenMap

HOST, BRIDGE, USER = "HOST", "BRIDGE", "USER"
PROTOCOLS = ("tcp", "udp", "udp,tcp", "tcp,udp")
NO_REGISTRY = ("no Docker registry is reachable from this cluster's agents: images are built on "
               "the agents (accessd image build) and used as they are")
NO_CNI = ("IP-per-task networking for a process needs a CNI network on the agents, which this "
          "cluster does not have: container networks are for DOCKER containers")
_CONTAINER_FIELDS = frozenset({"type", "docker", "appc", "volumes", "portMappings", "linuxInfo"})
_DOCKER_FIELDS = frozenset({"image", "network", "portMappings", "privileged", "parameters",
                            "forcePullImage", "pullConfig", "credential"})
_MAPPING_FIELDS = frozenset({"containerPort", "hostPort", "servicePort", "protocol", "name",
                             "labels", "networkNames"})
_VOLUME_FIELDS = frozenset({"containerPath", "hostPath", "mode", "persistent", "external",
                            "secret"})


@dataclass(frozen=True)
class PortMapping:
    container_port: int = 0
    host_port: int | None = 0  # None: no host port (USER networks without hostPort)
    service_port: int = 0
    protocol: str = "tcp"
    name: str | None = None
    labels: FrozenMap = field(default_factory=FrozenMap)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"containerPort": self.container_port}
        if self.host_port is not None:
            out["hostPort"] = self.host_port
        out.update({"servicePort": self.service_port, "protocol": self.protocol})
        if self.name is not None:
            out["name"] = self.name
        out["labels"] = self.labels.to_dict()
        return out


@dataclass(frozen=True)
class HostVolume:
    container_path: str
    host_path: str
    mode: str = "RW"

    def to_json(self) -> dict[str, Any]:
        return {"containerPath": self.container_path, "hostPath": self.host_path,
                "mode": self.mode}


@dataclass(frozen=True)
class ContainerSpec:
    type: str = "DOCKER"
    image: str | None = None
    network: str = HOST
    network_name: str | None = None
    port_mappings: tuple[PortMapping, ...] = ()
    volumes: tuple[HostVolume, ...] = ()
    parameters: tuple[tuple[str, str], ...] = ()
    privileged: bool = False

    @property
    def docker(self) -> bool:
        return self.type == "DOCKER"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "volumes": [v.to_json() for v in self.volumes]}
        if self.docker:
            out["docker"] = {"image": self.image, "forcePullImage": False,
                             "privileged": self.privileged,
                             "parameters": [{"key": k, "value": v} for k, v in self.parameters]}
        if self.network != HOST:
            out["portMappings"] = [m.to_json() for m in self.port_mappings]
        return out

    def networks_json(self) -> list[dict[str, Any]]:
        if self.network == BRIDGE:
            return [{"mode": "container/bridge"}]
        if self.network == USER:
            return [{"mode": "container", "name": self.network_name}]
        return [{"mode": "host"}]


def _empty(v: Any) -> bool:
    return v is MISSING or v is None or v == [] or v == {}


def network_mode(doc: dict, container: Any, errs: Errors) -> tuple[str, str | None]:
    """(HOST | BRIDGE | USER, network name) from `networks`, else the legacy
    `container.docker.network`."""
    nets = doc.get("networks")
    if not _empty(nets):
        if not isinstance(nets, list):
            errs.add(ptr("networks"), f"must be an array, got {type_name(nets)}")
            return HOST, None
        if len(nets) > 1:
            errs.add(ptr("networks"), "only one network per app is supported here")
        net = nets[0]
        if not isinstance(net, dict):
            errs.add(ptr("networks", 0), f"must be an object, got {type_name(net)}")
            return HOST, None
        check_unknown(net, {"mode", "name", "labels"}, ("networks", 0), errs)
        mode = net.get("mode", "container")
        if mode == "host":
            return HOST, None
        if mode == "container/bridge":
            return BRIDGE, None
        if mode == "container":
            name = string(net.get("name"), ("networks", 0, "name"), errs, None, nonempty=True)
            if name is None:
                errs.add(ptr("networks", 0, "name"),
                         "a container network needs the name of a Docker network on the agents")
            return USER, name
        errs.add(ptr("networks", 0, "mode"),
                 f"unknown mode {mode!r} (host, container/bridge or container)")
        return HOST, None
    docker = container.get("docker") if isinstance(container, dict) else None
    legacy = docker.get("network") if isinstance(docker, dict) else None
    if legacy in (None, "HOST"):
        return HOST, None
    if legacy == "BRIDGE":
        return BRIDGE, None
    errs.add(ptr("container", "docker", "network"),
             f"{legacy!r} is not supported here (HOST or BRIDGE; a named network goes in "
             "'networks': [{\"mode\": \"container\", \"name\": …}])")
    return HOST, None


def _port_mappings(raw: Any, path: tuple, network: str,
                   errs: Errors) -> tuple[PortMapping, ...]:
    if _empty(raw):
        return ()
    if network == HOST:
        errs.add(ptr(*path), "port mappings need a container network (container/bridge or "
                             "container); with host networking use portDefinitions")
        return ()
    if not isinstance(raw, list):
        errs.add(ptr(*path), f"must be an array, got {type_name(raw)}")
        return ()
    items = []
    for i, m in enumerate(raw):
        if isinstance(m, dict):
            items.append(((*path, i), m))
        else:
            errs.add(ptr(*path, i), f"must be an object, got {type_name(m)}")
    out: list[PortMapping] = []
    names: set[str] = set()
    for ipath, m in items:
        check_unknown(m, _MAPPING_FIELDS, ipath, errs)
        host_default = 0 if network == BRIDGE else None
        host = (integer(m["hostPort"], (*ipath, "hostPort"), errs, 0, ge=0, le=65535)
                if m.get("hostPort") is not None else host_default)
        name = string(m.get("name"), (*ipath, "name"), errs, None, nonempty=True)
        if name is not None:
            if name in names:
                errs.add(ptr(*ipath, "name"), f"port name {name!r} is used more than once")
            names.add(name)
        out.append(PortMapping(
            container_port=integer(m.get("containerPort"), (*ipath, "containerPort"), errs, 0,
                                   ge=0, le=65535),
            host_port=host,
            service_port=integer(m.get("servicePort"), (*ipath, "servicePort"), errs, 0, ge=0,
                                 le=65535),
            protocol=string(m.get("protocol"), (*ipath, "protocol"), errs, "tcp",
                            choices=PROTOCOLS) or "tcp",
            name=name,
            labels=str_map(m.get("labels"), (*ipath, "labels"), errs)))
    fixed = [m.host_port for m in out if m.host_port]
    if len(set(fixed)) != len(fixed):
        errs.add(ptr(*path), "a hostPort is used more than once")
    return tuple(out)


def _volumes(raw: Any, errs: Errors) -> tuple[HostVolume, ...]:
    if _empty(raw):
        return ()
    path = ("container", "volumes")
    if not isinstance(raw, list):
        errs.add(ptr(*path), f"must be an array, got {type_name(raw)}")
        return ()
    out: list[HostVolume] = []
    for i, v in enumerate(raw):
        vpath = (*path, i)
        if not isinstance(v, dict):
            errs.add(ptr(*vpath), f"must be an object, got {type_name(v)}")
            continue
        check_unknown(v, _VOLUME_FIELDS, vpath, errs)
        for kind in ("persistent", "external", "secret"):
            if not _empty(v.get(kind)):
                errs.add(ptr(*vpath, kind), f"{kind} volumes are not supported here: this "
                                            "cluster has no volume providers; use a hostPath")
        cpath = string(v.get("containerPath"), (*vpath, "containerPath"), errs, None,
                       nonempty=True)
        host = string(v.get("hostPath"), (*vpath, "hostPath"), errs, None, nonempty=True)
        mode = string(v.get("mode"), (*vpath, "mode"), errs, "RW", choices=("RW", "RO")) or "RW"
        if cpath is None:
            errs.add(ptr(*vpath, "containerPath"), "is required")
        if host is None:
            errs.add(ptr(*vpath, "hostPath"), "is required (only host-path volumes here)")
        if cpath and host:
            out.append(HostVolume(container_path=cpath, host_path=host, mode=mode))
    return tuple(out)


def _parameters(raw: Any, errs: Errors) -> tuple[tuple[str, str], ...]:
    if _empty(raw):
        return ()
    path = ("container", "docker", "parameters")
    if not isinstance(raw, list):
        errs.add(ptr(*path), f"must be an array, got {type_name(raw)}")
        return ()
    out = []
    for i, p in enumerate(raw):
        if not isinstance(p, dict):
            errs.add(ptr(*path, i), f"must be an object {{key, value}}, got {type_name(p)}")
            continue
        check_unknown(p, {"key", "value"}, (*path, i), errs)
        key = string(p.get("key"), (*path, i, "key"), errs, None, nonempty=True)
        value = string(p.get("value"), (*path, i, "value"), errs, "")
        if key is None:
            errs.add(ptr(*path, i, "key"), "is required")
        elif key.startswith("-") or "=" in key:
            errs.add(ptr(*path, i, "key"), "is a docker run option name without dashes, "
                                           "e.g. \"label\" or \"cap-drop\"")
        else:
            out.append((key, value or ""))
    return tuple(out)


def parse_container(doc: dict, errs: Errors) -> ContainerSpec | None:
    """The app's container (None: no container, or an empty MESOS one) and its network mode."""
    v = doc.get("container", MISSING)
    network, name = network_mode(doc, v, errs)
    if _empty(v):
        if network != HOST:
            errs.add(ptr("networks", 0), NO_CNI)
        return None
    path = ("container",)
    if not isinstance(v, dict):
        errs.add(ptr(*path), f"must be an object, got {type_name(v)}")
        return None
    check_unknown(v, _CONTAINER_FIELDS, path, errs)
    docker = v.get("docker")
    kind = v.get("type") or ("DOCKER" if not _empty(docker) else "MESOS")
    if kind not in ("DOCKER", "MESOS"):
        errs.add(ptr(*path, "type"), f"unknown container type {kind!r} (DOCKER or MESOS)")
        return None
    if not _empty(v.get("appc")):
        errs.add(ptr(*path, "appc"), "AppC images are not supported: use a DOCKER container")
    if not _empty(v.get("linuxInfo")):
        errs.add(ptr(*path, "linuxInfo"), "Linux capabilities and seccomp need the Mesos "
                                          "containerizer's isolators, which this cluster lacks")
    image = None
    privileged = False
    parameters: tuple[tuple[str, str], ...] = ()
    legacy_mappings: Any = None
    if kind == "DOCKER":
        dpath = (*path, "docker")
        if not isinstance(docker, dict):
            errs.add(ptr(*dpath), "a DOCKER container needs docker.image")
            return None
        check_unknown(docker, _DOCKER_FIELDS, dpath, errs)
        image = string(docker.get("image"), (*dpath, "image"), errs, None, nonempty=True)
        if image is None and docker.get("image") is None:
            errs.add(ptr(*dpath, "image"), "is required for a DOCKER container")
        if boolean(docker.get("forcePullImage"), (*dpath, "forcePullImage"), errs, False):
            errs.add(ptr(*dpath, "forcePullImage"), f"cannot be true: {NO_REGISTRY}")
        for key in ("pullConfig", "credential"):
            if not _empty(docker.get(key)):
                errs.add(ptr(*dpath, key), f"not supported here: {NO_REGISTRY}")
        privileged = boolean(docker.get("privileged"), (*dpath, "privileged"), errs, False)
        parameters = _parameters(docker.get("parameters"), errs)
        legacy_mappings = docker.get("portMappings")
    else:
        if isinstance(docker, dict) and docker.get("image"):
            errs.add(ptr(*path, "docker", "image"),
                     "a MESOS container with an image needs the Mesos containerizer's image "
                     "provisioner, which this cluster lacks: use type DOCKER")
        if network != HOST:
            errs.add(ptr("networks", 0), NO_CNI)
        if not _empty(v.get("volumes")):
            errs.add(ptr(*path, "volumes"), "a MESOS container's volumes need the Mesos "
                                            "containerizer's filesystem isolators (and "
                                            "persistent volumes need reservations), which this "
                                            "cluster lacks: use a DOCKER container")
    mappings_raw = v.get("portMappings")
    if not _empty(mappings_raw) and not _empty(legacy_mappings):
        errs.add(ptr(*path, "portMappings"),
                 "specify portMappings in container or in container.docker, not both")
    if _empty(mappings_raw) and not _empty(legacy_mappings):
        mappings = _port_mappings(legacy_mappings, (*path, "docker", "portMappings"), network,
                                  errs)
    else:
        mappings = _port_mappings(mappings_raw, (*path, "portMappings"), network, errs)
    volumes = _volumes(v.get("volumes"), errs) if kind == "DOCKER" else ()
    if kind == "MESOS":
        return None  # no image, no volumes: a plain task, as without a container
    return ContainerSpec(type=kind, image=image, network=network, network_name=name,
                         port_mappings=mappings, volumes=volumes, parameters=parameters,
                         privileged=privileged)
