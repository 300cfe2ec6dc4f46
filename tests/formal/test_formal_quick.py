"""The quick (bounded) formal set: every job of ``python -m formal --quick``.

Each job is one SymbiYosys run; proofs must PASS and the mutated harnesses must FAIL, which
shows the properties can catch a bug. Logs and traces land in pytest's tmp directory.
"""

import pytest

from formal import props, run


def _param(job):
    # A job that finds a known, reported bug stays visible: it must start passing (strict)
    # once the block is fixed, and then this mark goes.
    marks = [pytest.mark.xfail(reason=job.known_issue, strict=True)] if job.known_issue else []
    return pytest.param(job, id=job.name, marks=marks)


@pytest.mark.parametrize("job", [_param(job) for job in run.JOBS])
def test_formal_quick(job, tmp_path):
    result = run.run_job(job, quick=True, out_dir=tmp_path)
    assert result["status"] == job.expect, (
        f"{job.name}: {result['status']} (expected {job.expect}); failed properties:"
        f" {result['failed_properties']}; log {result['log']}")
    if job.expect == "FAIL":
        assert result["failed_properties"], "a mutant must fail on a named assertion"


def test_every_mutation_has_a_job():
    names = {job.name for job in run.JOBS if job.expect == "FAIL"}
    expected = ({f"regs_mut_{name}" for name in props.REGISTERS_MUTATIONS}
                | {f"dma_mut_{name}" for name in props.DMA_MUTATIONS})
    if props.controller_available():
        expected |= {f"tokens_mut_{name}" for name in props.CONTROLLER_MUTATIONS}
    assert names == expected


def test_harness_rejects_bad_parameters():
    cfg = props.formal_registers_config()
    with pytest.raises(ValueError, match="checks"):
        props.RegistersHarness(cfg, checks=("nonsense",))
    with pytest.raises(ValueError, match="mutation"):
        props.RegistersHarness(cfg, mutation="nonsense")
    with pytest.raises(ValueError, match="engines"):
        props.DmaHarness(props.formal_dma_config(), engines=())
    with pytest.raises(ValueError, match="--only"):
        run.select_jobs(["nonsense"])
