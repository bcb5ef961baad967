"""Demo data for a fresh node: one enterprise and a few identifiers, so that a newcomer can
resolve something straight away."""

from __future__ import annotations

from registry.model import Principal, Role, Value
from registry.service import Registry
from resolver.datadir import DataDir

DEMO_CODE = "8"
DEMO_PRODUCTS = [
    ("DEMO-0001", "Hydraulic pump HP-200", "B2026-11-A", "Xuzhou, Jiangsu"),
    ("DEMO-0002", "Servo motor SM-75", "B2026-11-B", "Shenzhen, Guangdong"),
    ("DEMO-0003", "液压阀 HV-12", "B2026-10-C", "宁波, 浙江"),
    ("DEMO-0004", "Bearing 6204-2RS", "B2026-09-D", "Wafangdian, Liaoning"),
    ("DEMO-0005", "PLC controller C-300", "B2026-11-E", "Wuxi, Jiangsu"),
]


def seed(data_dir: DataDir, registry: Registry) -> list[str]:
    """Create the demo enterprise (credential saved under ``credentials/<prefix>``) and its
    identifiers; returns the identifiers. Call only on a node with no enterprises."""
    admin = Principal(Role.ADMIN)
    enterprise = registry.create_enterprise(
        admin, DEMO_CODE, "Demo Enterprise", "ops@example.com", data_dir.issue_enterprise_credential
    )
    owner = registry.authenticate_enterprise(enterprise.prefix, enterprise.fingerprints[-1])
    created = []
    for suffix, name, batch, origin in DEMO_PRODUCTS:
        ident = f"{enterprise.prefix}/{suffix}"
        registry.create(
            owner,
            ident,
            [
                Value(1, "URL", f"https://example.com/products/{suffix.lower()}"),
                Value(2, "product.name", name),
                Value(3, "product.batch", batch),
                Value(4, "product.origin", origin),
            ],
        )
        created.append(ident)
    return created
