"""Config models, the FCSP_* environment check (libfcsp's own reader), the C parsers and the policy table,
through the installed package (run with `pytest`, which imports fcsp_core from site-packages)."""

from __future__ import annotations

import os

import pytest
from pydantic import ValidationError

from fcsp_core import __version__, _native, c_constants, config, paths, region
from fcsp_core.config import (
    MAX_GPUS,
    NAME_LEN,
    UUID_LEN,
    EnvError,
    GpuLimits,
    MemLimit,
    PolicyEntry,
    PolicyGpuLimit,
    TenantLimits,
    check_env,
    check_tenant_name,
    parse_mem_limit,
    parse_size_bytes,
    parse_sm_limit,
    read_sim_env,
)

GiB = 1 << 30
MiB = 1 << 20


# ---------------------------------------------------------------------------------------------------
# Models (no C needed)
# ---------------------------------------------------------------------------------------------------


def test_mem_limit_is_bytes_or_percent_exactly():
    assert MemLimit(limit_bytes=GiB).to_env() == str(GiB)
    assert MemLimit(limit_pct=12.5).to_env() == "12.5%"
    assert MemLimit(limit_bytes=6 * GiB).describe() == "6 GiB"
    assert MemLimit(limit_pct=50).describe() == "50% of the GPU"
    with pytest.raises(ValidationError):
        MemLimit()
    with pytest.raises(ValidationError):
        MemLimit(limit_bytes=GiB, limit_pct=10)
    with pytest.raises(ValidationError):
        MemLimit(limit_pct=150)
    with pytest.raises(ValidationError):
        MemLimit(limit_bytes=0)


def test_tenant_limits_to_env():
    limits = TenantLimits(
        tenant="job-1",
        mem_limit=MemLimit(limit_bytes=2 * GiB),
        sm_limit_pct=40,
        gpus={1: GpuLimits(mem_limit=MemLimit(limit_pct=25), sm_limit_pct=10)},
    )
    assert limits.to_env() == {
        "FCSP_TENANT": "job-1",
        "FCSP_MEM_LIMIT": str(2 * GiB),
        "FCSP_SM_LIMIT": "40",
        "FCSP_MEM_LIMIT_1": "25%",
        "FCSP_SM_LIMIT_1": "10",
    }
    assert TenantLimits().to_env() == {}
    with pytest.raises(ValidationError):
        TenantLimits(sm_limit_pct=0)
    with pytest.raises(ValidationError):
        TenantLimits(gpus={16: GpuLimits()})


@pytest.mark.parametrize("name", ["train", "slurm-1234.0", "ray:task@host", "a/b", "a" * 63])
def test_tenant_names_accepted(name):
    assert check_tenant_name(name) == name
    assert TenantLimits(tenant=name).tenant == name


@pytest.mark.parametrize("name", ["", "has space", "tab\there", "a" * 64, "é"])
def test_tenant_names_refused(name):
    with pytest.raises(ValueError, match="tenant name"):
        check_tenant_name(name)
    with pytest.raises(ValidationError):
        TenantLimits(tenant=name)


def test_policy_entry_validation():
    entry = PolicyEntry(
        tenant="alice",
        uid=1000,
        mem_limit_bytes=8 * GiB,
        sm_limit_pct=50,
        gpus=[PolicyGpuLimit(uuid="GPU-12345678-1234-1234-1234-123456789abc", mem_limit_bytes=GiB)],
    )
    assert entry.gpus[0].sm_limit_pct == 0
    assert PolicyEntry(tenant="any").uid is None
    with pytest.raises(ValidationError):
        PolicyEntry(tenant="x", sm_limit_pct=101)
    with pytest.raises(ValidationError):
        PolicyEntry(tenant="x", mem_limit_bytes=-1)
    with pytest.raises(ValidationError):
        PolicyEntry(tenant="x", gpus=[PolicyGpuLimit(uuid=f"GPU-{i}") for i in range(17)])
    with pytest.raises(ValidationError):
        PolicyGpuLimit(uuid="x" * 48)
    with pytest.raises(ValidationError):
        PolicyEntry(tenant="x", extra_field=1)


def test_read_cdef_needs_the_markers():
    with pytest.raises(ValueError, match="FCSP_CDEF_BEGIN"):
        c_constants.read_cdef("int f(void);")
    text = "x\n/* FCSP_CDEF_BEGIN */\nint f(void);\n/* FCSP_CDEF_END */\ny"
    assert c_constants.read_cdef(text).strip() == "int f(void);"


def test_python_reads_the_c_constants():
    """config's sizes are limits.h's (through cffi), the API's defines are read too, and the cdef's struct
    arrays agree with the sizes."""
    limits = c_constants.constants()
    assert MAX_GPUS == limits.FCSP_MAX_GPUS == 16
    assert (NAME_LEN, UUID_LEN) == (limits.FCSP_NAME_LEN, limits.FCSP_UUID_LEN)
    header = '#ifndef G\n#define G\n#define FCSP_X 7 /* why */\n#define FCSP_Y 0xFF\n#define FCSP_Z "s"\n'
    assert c_constants.cdef(header) == "#define FCSP_X 7\n#define FCSP_Y 0xFF\n"
    errors = {name: code for name, code in c_constants.named("FCSP_E").items() if code < 0}
    assert errors["FCSP_EINVAL"] == -1 and len(errors) == len(set(errors.values())) >= 7
    assert {code: name for name, code in errors.items()} == _native.ERROR_NAMES
    assert isinstance(_native.make_error(errors["FCSP_EBUSY"], "busy", "x"), _native.FcspBusyError)
    ffi = _native.native().ffi
    fields = dict(ffi.typeof("struct fcsp_snapshot").fields)
    assert fields["gpus"].type.length == MAX_GPUS
    assert dict(ffi.typeof("struct fcsp_gpu_info").fields)["uuid"].type.length == UUID_LEN
    assert dict(ffi.typeof("struct fcsp_policy_in").fields)["tenant"].type.length == NAME_LEN


def test_installed_header_has_the_cdef():
    header = paths.api_header_path()
    cdef = c_constants.read_cdef(header.read_text())
    assert "fcsp_region_snapshot" in cdef and "#include" not in cdef


def test_lib_dir_override(monkeypatch, tmp_path):
    monkeypatch.setenv("FCSP_LIB_DIR", str(tmp_path))
    assert paths.lib_dir() == tmp_path.resolve()
    with pytest.raises(paths.NativeMissingError, match=r"libfcsp.so not found at .*pip install \."):
        paths.libfcsp_path()
    monkeypatch.delenv("FCSP_LIB_DIR")
    assert paths.lib_dir() == paths.PACKAGE_DIR / "lib"


# ---------------------------------------------------------------------------------------------------
# The C parsers (one grammar for C and Python)
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "nbytes"),
    [
        ("8589934592", 8 * GiB),
        ("8G", 8 * GiB),
        ("8192M", 8 * GiB),
        ("1.5GiB", 3 * GiB // 2),
        ("512K", 512 << 10),
    ],
)
def test_parse_mem_limit_sizes(text, nbytes):
    assert parse_mem_limit(text) == MemLimit(limit_bytes=nbytes)
    assert region.parse_mem_limit(text) == MemLimit(limit_bytes=nbytes)


def test_parse_mem_limit_percent():
    assert parse_mem_limit("50%") == MemLimit(limit_pct=50.0)
    with pytest.raises(ValueError, match="percentage"):
        parse_size_bytes("50%")


@pytest.mark.parametrize("text", ["abc", "", "-1G", "0", "12Q"])
def test_parse_mem_limit_refuses(text):
    with pytest.raises(ValueError) as info:
        parse_mem_limit(text)
    message = str(info.value)
    assert message and "\n" not in message


@pytest.mark.parametrize(("text", "pct"), [("40", 40), ("40%", 40), ("100", 100), ("1", 1)])
def test_parse_sm_limit(text, pct):
    assert parse_sm_limit(text) == pct


@pytest.mark.parametrize("text", ["0", "101", "150", "abc", "40.5", ""])
def test_parse_sm_limit_refuses(text):
    with pytest.raises(ValueError) as info:
        parse_sm_limit(text)
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------------------------------------------
# The environment
# ---------------------------------------------------------------------------------------------------


def test_check_env_accepts_what_libfcsp_accepts():
    env = {
        "FCSP_TENANT": "job-7",
        "FCSP_MEM_LIMIT": "4G",
        "FCSP_MEM_LIMIT_1": "50%",
        "FCSP_SM_LIMIT": "30",
        "FCSP_SM_LIMIT_2": "70%",
        "FCSP_ON_INIT_FAILURE": "fail",
        "FCSP_SM_MODE": "borrow",
        "FCSP_SM_BURST_MS": "20",
        "PATH": "/usr/bin",
    }
    check_env(env)
    check_env({})
    with pytest.raises(EnvError, match="FCSP_MEM_LIMIT="):
        check_env({"FCSP_MEM_LIMIT": ""})  # libfcsp refuses an empty limit (a Python copy let it pass)
    # What TenantLimits writes, libfcsp reads.
    limits = TenantLimits(
        tenant="t", mem_limit=MemLimit(limit_pct=12.5), sm_limit_pct=40, gpus={3: GpuLimits(sm_limit_pct=20)}
    )
    check_env(limits.to_env())


@pytest.mark.parametrize(
    ("name", "value", "accepted"),
    [
        ("FCSP_MEM_LIMIT", "lots", "8G"),
        ("FCSP_MEM_LIMIT_0", "-5", "8G"),
        ("FCSP_SM_LIMIT", "150", "100"),
        ("FCSP_SM_LIMIT_3", "x", "100"),
        ("FCSP_TENANT", "bad name", "printable"),
        ("FCSP_ON_INIT_FAILURE", "ignore", "fail or passthrough"),
        ("FCSP_SM_MODE", "fast", "borrow"),
        ("FCSP_SM_BURST_MS", "0", "1 to 1000"),
    ],
)
def test_check_env_reports_libfcsps_line(name, value, accepted):
    """The check is libfcsp's own reader (fcsp_env_check): its one line, naming the variable and the value."""
    with pytest.raises(EnvError) as info:
        check_env({"FCSP_TENANT": "ok", name: value})
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"fcsp: {name}={value}: ") and accepted in message, message
    assert (info.value.name, info.value.value) == (name, value)


def test_check_env_defaults_to_os_environ(monkeypatch):
    monkeypatch.setenv("FCSP_SM_LIMIT", "0")
    with pytest.raises(EnvError, match="FCSP_SM_LIMIT=0"):
        check_env()


@pytest.mark.parametrize(
    ("name", "value", "accepted"),
    [("FCSP_SIM_GPUS", "9", "1..8"), ("FCSP_SIM_SMS", "many", "1..1024"), ("FCSP_SIM_MEM", "50%", "8G")],
)
def test_read_sim_env_reports_one_line(name, value, accepted):
    with pytest.raises(EnvError) as info:
        read_sim_env({name: value})
    message = str(info.value)
    assert "\n" not in message and name in message and repr(value) in message and accepted in message
    assert read_sim_env({}).gpus is None


def test_read_sim_env_reads_every_setting():
    sim = read_sim_env(
        {"FCSP_SIM_GPUS": "2", "FCSP_SIM_MEM": "16G", "FCSP_SIM_SMS": "64", "FCSP_SIM_KERNEL_US": "spin=200",
         "FCSP_SIM_DIR": "/tmp/sim"}
    )  # fmt: skip
    assert (sim.gpus, sim.mem_bytes, sim.sms, sim.kernel_us) == (2, 16 * GiB, 64, "spin=200")
    assert str(sim.state_dir) == "/tmp/sim"


# ---------------------------------------------------------------------------------------------------
# The region manager: regions and the policy table, in a private directory
# ---------------------------------------------------------------------------------------------------


@pytest.fixture
def region_dir(tmp_path):
    path = tmp_path / "region"
    os.mkdir(path, 0o700)
    return path


def test_default_region_dir_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("FCSP_REGION_DIR", str(tmp_path))
    assert region.default_region_dir() == tmp_path


def test_missing_region_is_a_typed_error(tmp_path):
    with pytest.raises(region.FcspNotFoundError) as info:
        region.Region.open(tmp_path / "nowhere")
    assert info.value.code == -2 and info.value.code_name == "FCSP_ENOENT"
    assert "nowhere" in info.value.message
    snapshot = region.read_snapshot(tmp_path / "nowhere")
    assert not snapshot.exists and snapshot.tenants == [] and snapshot.note


def test_new_region_is_empty(region_dir):
    with region.Region.open(region_dir, create=True) as reg:
        assert reg.file.startswith(str(region_dir))
        snapshot = reg.snapshot()
        assert snapshot.exists and snapshot.tenants == [] and snapshot.processes == []
        with pytest.raises(region.FcspNotFoundError):
            reg.remove_tenant("nobody")
    with pytest.raises(ValueError, match="closed"):
        reg.snapshot()
    assert region.read_snapshot(region_dir).exists


def test_policy_round_trip(region_dir):
    entry = PolicyEntry(
        tenant="alice",
        uid=os.getuid(),
        mem_limit_bytes=8 * GiB,
        sm_limit_pct=50,
        gpus=[PolicyGpuLimit(uuid="GPU-00000000-0000-0000-0000-000000000001", mem_limit_bytes=2 * GiB)],
    )
    region.policy_put(entry, region_dir)
    region.policy_put(PolicyEntry(tenant="bob", mem_limit_bytes=GiB), region_dir)
    listed = {e.tenant: e for e in region.policy_list(region_dir)}
    assert listed["alice"] == entry
    assert listed["bob"].uid is None and listed["bob"].mem_limit_bytes == GiB
    # Replacing keeps one entry per tenant.
    region.policy_put(entry.model_copy(update={"sm_limit_pct": 20}), region_dir)
    listed = {e.tenant: e for e in region.policy_list(region_dir)}
    assert len(listed) == 2 and listed["alice"].sm_limit_pct == 20
    region.policy_remove("alice", region_dir)
    assert [e.tenant for e in region.policy_list(region_dir)] == ["bob"]
    with pytest.raises(region.FcspError):
        region.policy_remove("alice", region_dir)


def test_version():
    """libfcsp's version is the package's (both from pyproject.toml)."""
    assert region.fcsp_version() == __version__


@pytest.mark.parametrize(
    "name", ["t", "slurm-12.0", "x" * (NAME_LEN - 1), "x" * NAME_LEN, "a b", "tab\there", "é", "~!"]
)
def test_tenant_names_python_and_libfcsp_agree(name):
    """The config models, the CLI and libfcsp's FCSP_TENANT reader accept exactly the same names: one rule,
    C's fcsp_parse_tenant."""
    try:
        check_tenant_name(name)
        py_ok = True
    except ValueError:
        py_ok = False
    try:
        check_env({"FCSP_TENANT": name})
        c_ok = True
    except EnvError:
        c_ok = False
    assert py_ok == c_ok, (name, py_ok, c_ok)
    assert py_ok == (0 < len(name) < NAME_LEN and all(0x21 <= ord(ch) <= 0x7E for ch in name))


def test_simulator_limits_come_from_c():
    assert (config.SIM_MAX_GPUS, config.SIM_MAX_SMS) == (
        c_constants.constants().FCSP_SIM_MAX_GPUS,
        c_constants.constants().FCSP_SIM_MAX_SMS,
    )
