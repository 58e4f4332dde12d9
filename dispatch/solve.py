"""Hand a Pyomo model to HiGHS and read the answer back: the only module that touches the solver.

Pyomo's cost is the hand-over, not the build (DESIGN.md §10): its persistent interfaces
take seconds to load a model of this size. Pyomo's own linear standard-form compiler
turns the model into sparse arrays in a fraction of that, and ``highspy.passModel``
takes arrays directly; the solution comes back by column order.

Outcomes are values: :class:`SolveOutcome` says what HiGHS did; nothing here raises on a
non-optimal result.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import highspy
import numpy as np
import pyomo.environ as pyo
import scipy.sparse  # noqa: F401  Pyomo imports it lazily on the first compile (≈0.5 s); pay at start-up
from pyomo.common.enums import ObjectiveSense
from pyomo.repn.plugins.standard_form import LinearStandardFormCompiler

from dispatch.problem import SolverSettings

__all__ = ["SolveOutcome", "SolverStatus", "solve_model"]

INF = highspy.kHighsInf


class SolverStatus:
    """HiGHS model statuses we act on, as plain strings in the outcome."""

    OPTIMAL = "optimal"
    TIME_LIMIT = "time_limit"
    INFEASIBLE = "infeasible"
    FAILED = "failed"


@dataclass(frozen=True)
class SolveOutcome:
    """What the solver did.

    Attributes
    ----------
    status : str
        One of :class:`SolverStatus`.
    has_solution : bool
        True when variable values were loaded into the model.
    objective : float
        Objective value of the loaded solution (NaN without one).
    mip_gap : float
        Relative gap HiGHS reports for the loaded solution (NaN for an LP or none).
    highs_status : str
        HiGHS's own model status text.
    compile_s, highs_s, load_s : float
        Wall time of the hand-over to arrays, of HiGHS's own run (as HiGHS reports
        it), and of loading values back into Pyomo [s].
    """

    status: str
    has_solution: bool
    objective: float
    mip_gap: float
    highs_status: str
    compile_s: float
    highs_s: float
    load_s: float


def solve_model(
    model: pyo.ConcreteModel,
    settings: SolverSettings,
    start: Sequence[tuple[pyo.Var, float]] = (),
) -> SolveOutcome:
    """Solve a linear (mixed-integer) Pyomo model with HiGHS.

    Parameters
    ----------
    model : pyomo.environ.ConcreteModel
        A model with one active objective and only linear constraints.
    settings : SolverSettings
        Time limit, gaps, threads.
    start : sequence of (pyomo variable data, float), optional
        A (partial) MIP start, e.g. the relays of the previous plan.

    Returns
    -------
    SolveOutcome
        With the solution loaded into the model's variables when there is one.
    """
    begin = time.perf_counter()
    form = LinearStandardFormCompiler().write(model, mixed_form=True, set_sense=None)
    highs = highspy.Highs()
    highs.setOptionValue("output_flag", False)
    highs.setOptionValue("time_limit", float(settings.time_limit_s))
    highs.setOptionValue("mip_rel_gap", float(settings.mip_rel_gap))
    highs.setOptionValue("mip_abs_gap", float(settings.mip_abs_gap))
    if settings.threads is not None:
        highs.setOptionValue("threads", int(settings.threads))
    integer = _pass_model(highs, form)
    columns = list(form.columns)
    if start:
        position = {id(var): i for i, var in enumerate(columns)}
        known = [(position[id(v)], float(x)) for v, x in start if id(v) in position]
        if known:
            index = np.array([i for i, _ in known], dtype=np.int32)
            value = np.array([x for _, x in known], dtype=np.float64)
            highs.setSolution(len(known), index, value)
    compiled = time.perf_counter()

    before = float(highs.getRunTime())  # HiGHS's clock is cumulative per instance
    highs.run()
    highs_s = float(highs.getRunTime()) - before
    model_status = highs.getModelStatus()
    status_text = highs.modelStatusToString(model_status)
    info = highs.getInfo()
    has_solution = int(info.primal_solution_status) == int(
        highspy.SolutionStatus.kSolutionStatusFeasible
    )
    status = _status(model_status, has_solution)

    loaded = time.perf_counter()
    objective = float("nan")
    gap = float("nan")
    if has_solution:
        values = np.asarray(highs.getSolution().col_value, dtype=np.float64)
        # HiGHS returns integers within its integrality tolerance: snap them.
        values[integer] = np.round(values[integer])
        for var, x in zip(columns, values.tolist(), strict=True):
            var.set_value(x, skip_validation=True)
        objective = float(info.objective_function_value)
        gap = float(info.mip_gap) if integer.any() else 0.0
    done = time.perf_counter()
    return SolveOutcome(
        status=status,
        has_solution=has_solution,
        objective=objective,
        mip_gap=gap,
        highs_status=status_text,
        compile_s=compiled - begin,
        highs_s=highs_s,
        load_s=done - loaded,
    )


def _pass_model(highs: highspy.Highs, form: object) -> np.ndarray:
    """Hand the standard form's arrays to HiGHS (column-wise sparse matrix).

    Returns
    -------
    numpy.ndarray
        Which columns are integer (bool), for reading the solution back.
    """
    matrix = form.A.tocsc()  # type: ignore[attr-defined]
    rows = form.rows  # type: ignore[attr-defined]
    n_rows, n_cols = matrix.shape
    # mixed_form keeps each row's sense: bound_type 0 is =, 1 is ≤, -1 is ≥.
    bound_type = np.fromiter((r.bound_type for r in rows), dtype=np.int8, count=n_rows)
    rhs = np.asarray(form.rhs, dtype=np.float64)  # type: ignore[attr-defined]
    row_lower = np.where(bound_type == 1, -INF, rhs)
    row_upper = np.where(bound_type == -1, INF, rhs)
    columns = form.columns  # type: ignore[attr-defined]
    # None (unbounded) becomes NaN in a float array, then ±inf.
    bounds = np.array([var.bounds for var in columns], dtype=np.float64).reshape(n_cols, 2)
    col_lower = np.nan_to_num(bounds[:, 0], nan=-INF)
    col_upper = np.nan_to_num(bounds[:, 1], nan=INF)
    integrality = np.fromiter(
        (var.is_integer() for var in columns), dtype=np.int32, count=len(columns)
    )
    c = form.c  # type: ignore[attr-defined]
    cost = np.asarray(c.toarray()[0], dtype=np.float64) if c.shape[0] else np.zeros(n_cols)
    offsets = form.c_offset  # type: ignore[attr-defined]
    offset = float(offsets[0]) if len(offsets) else 0.0
    objective = form.objectives[0]  # type: ignore[attr-defined]
    sense = (
        highspy.ObjSense.kMaximize
        if objective.sense == ObjectiveSense.maximize
        else highspy.ObjSense.kMinimize
    )
    status = highs.passModel(
        n_cols,
        n_rows,
        matrix.nnz,
        int(highspy.MatrixFormat.kColwise),
        int(sense),
        offset,
        cost,
        col_lower,
        col_upper,
        row_lower,
        row_upper,
        matrix.indptr.astype(np.int32),
        matrix.indices.astype(np.int32),
        matrix.data.astype(np.float64),
        integrality,
    )
    # kWarning means HiGHS cleaned tiny coefficients up itself; only an error is fatal.
    if status == highspy.HighsStatus.kError:
        msg = f"HiGHS refused the model: {status}"
        raise RuntimeError(msg)
    return integrality.astype(bool)


def _status(model_status: object, has_solution: bool) -> str:
    if model_status == highspy.HighsModelStatus.kOptimal:
        return SolverStatus.OPTIMAL
    if model_status == highspy.HighsModelStatus.kInfeasible:
        return SolverStatus.INFEASIBLE
    if has_solution:
        return SolverStatus.TIME_LIMIT
    return SolverStatus.FAILED
