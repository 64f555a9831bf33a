"""Granting ACLs on a development broker, with Kafka's own Java admin client.

aiokafka has no call for it, and speaks only the CreateAcls versions Kafka 4
dropped; Kafka's jars hold no ``kafka-acls`` tool. So a dozen lines of Java
(Java 11+ runs a single source file) use the ``Admin`` client of the jars the
broker runs from, through its open listener, whose anonymous principal is a
super user (:class:`devtools.kafka.SecureListeners`).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path

from callmap.acls import Acl
from devtools.kafka import DevBroker, DevKafkaError, resolve_jars

_GRANT_JAVA = """import java.util.*;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.common.acl.*;
import org.apache.kafka.common.resource.*;

public class Grant {
    public static void main(String[] args) throws Exception {
        Properties props = new Properties();
        props.put("bootstrap.servers", args[0]);
        List<AclBinding> bindings = new ArrayList<>();
        for (int i = 1; i < args.length; i++) {
            String[] f = args[i].split(",", 5);
            bindings.add(new AclBinding(
                new ResourcePattern(ResourceType.valueOf(f[1]), f[3], PatternType.valueOf(f[2])),
                new AccessControlEntry(f[0], "*", AclOperation.valueOf(f[4]),
                    AclPermissionType.ALLOW)));
        }
        try (Admin admin = Admin.create(props)) {
            admin.createAcls(bindings).all().get();
        }
    }
}
"""


def grant(broker: DevBroker, grants: Mapping[str, Iterable[Acl]]) -> None:
    """Allow each principal (``User:<name>``) of ``grants`` its ACLs on ``broker``.

    All in one run of the Java program: each run starts a JVM and compiles
    the source, seconds on this machine, once for every principal before."""
    java = shutil.which("java")
    if java is None:
        raise DevKafkaError("Java 17 or newer is needed to grant ACLs; install it first")
    source = Path(broker.directory) / "Grant.java"
    source.write_text(_GRANT_JAVA)
    specs = [
        f"{principal},{a.resource},{a.pattern},{a.name},{a.operation}"
        for principal, acls in grants.items()
        for a in acls
    ]
    command = [java, "-cp", f"{resolve_jars()}/*", str(source), broker.bootstrap]
    result = subprocess.run([*command, *specs], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise DevKafkaError(
            f"granting ACLs to {', '.join(grants)} failed:\n{result.stderr[-3000:]}"
        )
