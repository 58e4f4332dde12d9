"""Hand a Pyomo model to HiGHS and solve its tiers in order; the only module touching the solver.

Pyomo's cost is the hand-over, not the build (DESIGN.md §10): its persistent interfaces
take seconds to load a model of this size. Pyomo's own linear standard-form compiler
turns the model into sparse arrays in a fraction of that, and ``highspy.passModel``
takes arrays directly; the solution comes back by column order.

The model carries one objective per tier. :class:`LexicographicSolver` compiles them all
at once (one cost row each), then solves them one after another in one HiGHS instance:
each stage minimises its tier with an absolute gap in the tier's own units, and its
accepted value becomes a constraint row for the stages after it. The previous stage's
solution is the next stage's MIP start (it is feasible there by construction). With the
binaries fixed (:meth:`LexicographicSolver.fix_integers`) the same stages are LPs: the
polishing step.

Every HiGHS run is bounded by a wall-clock deadline: HiGHS runs in a worker thread whose
interrupt callbacks stop it at the deadline, and if it does not stop within
:data:`INTERRUPT_GRACE_S` the run is abandoned (its thread finishes on its own) and the
caller keeps the last solution it had. Outcomes are values (:class:`StageReport`);
nothing here raises on a non-optimal result.
"""

from __future__ import annotations

import atexit
import threading
import time
from collections.abc import Sequence
from typing import Any

import highspy
import numpy as np
import pyomo.environ as pyo
import scipy.sparse  # noqa: F401  Pyomo imports it lazily on the first compile (≈0.5 s); pay at start-up
from pyomo.common.enums import ObjectiveSense
from pyomo.repn.plugins.standard_form import LinearStandardFormCompiler

from dispatch.problem import SolverSettings
from dispatch.schedule import SolverStatus, StageReport

__all__ = ["INTERRUPT_GRACE_S", "LexicographicSolver"]

INF = highspy.kHighsInf

INTERRUPT_GRACE_S = 1.0
"""How long a run may take to stop after its deadline before it is abandoned [s]. HiGHS
polls its interrupt callbacks every few simplex iterations or nodes, but a gap of 0.71 s
between polls was measured inside a root-node cut round on the default site (reserve
tier, 2026-06-15; shared 2-core machine)."""

_ABANDONED: list[threading.Thread] = []


@atexit.register
def _join_abandoned() -> None:
    # A HiGHS run still going in a daemon thread at interpreter exit aborts the process
    # (std::terminate); an interrupted run ends within its time limit, so wait for it.
    for worker in _ABANDONED:
        worker.join()


ROW_SLACK = 1e-9
"""Relative slack on a fixed tier's row: its bound is computed from the very solution
that set it, so that solution stays a feasible MIP start despite rounding."""


class LexicographicSolver:
    """One HiGHS instance solving a model's objectives one after another.

    Parameters
    ----------
    model : pyomo.environ.ConcreteModel
        Linear (mixed-integer) model; every active objective becomes a stage objective.
    settings : SolverSettings
        Threads; the time limit and gaps are replaced by the deadline and per-stage
        absolute tolerances.
    deadline : float
        ``time.monotonic()`` value after which no HiGHS run may continue.
    """

    def __init__(self, model: pyo.ConcreteModel, settings: SolverSettings, deadline: float) -> None:
        begin = time.perf_counter()
        form = LinearStandardFormCompiler().write(model, mixed_form=True, set_sense=None)
        self.deadline = deadline
        self.columns: list[pyo.Var] = list(form.columns)
        self._position = {id(var): i for i, var in enumerate(self.columns)}
        self._names = [obj.name.removeprefix("objective_") for obj in form.objectives]
        # One dense row per objective: a handful of rows of ≈ 10⁴ columns.
        costs = np.asarray(form.c.toarray(), dtype=np.float64).reshape(len(self._names), -1)
        self._costs = {name: costs[i] for i, name in enumerate(self._names)}
        self._offsets = {name: float(form.c_offset[i]) for i, name in enumerate(self._names)}
        self.highs = highspy.Highs()
        self.highs.setOptionValue("output_flag", False)
        self.highs.setOptionValue("mip_rel_gap", 0.0)  # gaps are absolute, per tier
        # No RINS/RENS sub-MIPs: each stage already starts from its relaxation rounded
        # (dispatch.solve_dispatch), and with the later tiers' relays held off a stage's
        # binaries are few, so branching closes the gap sooner than these heuristics,
        # which took 0.5-3 s of a business or household stage's root on the default
        # site (sub-MIPs nested 6 deep). Measured in the commit that set this.
        self.highs.setOptionValue("mip_heuristic_run_rins", False)
        self.highs.setOptionValue("mip_heuristic_run_rens", False)
        if settings.threads is not None:
            self.highs.setOptionValue("threads", int(settings.threads))
        self.integer, self._col_lower, self._col_upper = _pass_model(self.highs, form)
        # Upper bounds in force: the passed ones, except columns held off by ``pin_off``.
        self._upper_now = self._col_upper.copy()
        self._stopped = threading.Event()
        for event in (
            self.highs.cbMipInterrupt,
            self.highs.cbSimplexInterrupt,
            self.highs.cbIpmInterrupt,
        ):
            event += self._interrupt
        self.solution: np.ndarray | None = None
        # False while ``solution`` was carried over from another model (a fallback
        # plan, but not a complete MIP start for this one).
        self.own_solution = False
        self.values: dict[str, float] = {}  # each fixed tier's accepted value
        self.tolerances: dict[str, float] = {}  # and the tolerance it was fixed with
        self._rows: list[int] = []
        self.relaxed: np.ndarray | None = None  # the last relaxed stage's solution
        self.compile_s = time.perf_counter() - begin
        self.highs_s = 0.0
        self.abandoned = False
        self._tolerance = 0.0

    @property
    def objectives(self) -> list[str]:
        """Names of the stage objectives (``objective_`` stripped)."""
        return list(self._names)

    def _interrupt(self, event: Any) -> None:
        # Set the flag both ways: HiGHS keeps it between runs of one instance.
        stop = self._stopped.is_set() or time.monotonic() >= self.deadline
        if event.callback_type == highspy.cb.HighsCallbackType.kCallbackMipInterrupt:
            # HiGHS checks its own gap only between root cut rounds (seconds apart on
            # the default site); the callback sees the bounds every few iterations.
            out = event.data_out
            stop = stop or out.mip_primal_bound - out.mip_dual_bound <= self._tolerance
        event.interrupt(stop)

    def positions(self, variables: Sequence[pyo.Var]) -> np.ndarray:
        """Column index of each variable in a solution vector (-1 if not in the model)."""
        return np.array([self._position.get(id(v), -1) for v in variables], dtype=np.int64)

    def cost(self, name: str) -> np.ndarray:
        """An objective's cost row over the columns (a copy; the constant aside)."""
        row: np.ndarray = self._costs[name].copy()
        return row

    def value_of(self, name: str, solution: np.ndarray) -> float:
        """An objective's value at a solution (with its constant)."""
        return float(self._costs[name] @ solution + self._offsets[name])

    def start(self, values: Sequence[tuple[pyo.Var, float]]) -> None:
        """A (partial) MIP start, e.g. the relays of the previous plan."""
        known = [(self._position[id(v)], float(x)) for v, x in values if id(v) in self._position]
        if known:
            index = np.array([i for i, _ in known], dtype=np.int32)
            value = np.array([x for _, x in known], dtype=np.float64)
            self.highs.setSolution(len(known), index, value)

    def plan_pinned(self, name: str | None = None, pins: np.ndarray | None = None) -> bool:
        """A plan with every free binary pinned, at 0 or at ``pins`` rounded.

        At 0 every switchable unit is off; ``pins`` may be a relaxed solution. Solved as
        an LP (the binaries' bounds pinned, then restored) under the rows fixed so far,
        minimising objective ``name`` (any feasible plan without one); it replaces the
        plan in hand when it is better for ``name``. With the soft SoC window and every
        shortfall priced the all-off plan is feasible whenever the units held on can be
        fed. It is the next MILP stage's start, so that stage has a plan from its first
        node even if the deadline cuts it short. Returns whether the plan was taken.
        """
        index = np.flatnonzero(self.integer).astype(np.int32)
        if index.size == 0 or self.abandoned or self.deadline <= time.monotonic():
            return False
        highs = self.highs
        value = np.zeros(index.size) if pins is None else np.clip(np.round(pins[index]), 0, 1)
        value = np.minimum(value, self._upper_now[index])  # held off by pin_off: off
        highs.changeColsBounds(index.size, index, value, value)
        self._minimise(name, 1e30)  # its binaries are pinned: the first plan is the plan
        finished, _ = self._run()
        if not finished:
            self.abandoned = True
            return False
        found = self._found()
        highs.changeColsBounds(index.size, index, self._col_lower[index], self._upper_now[index])
        if not found:
            return False
        values = self._snapped()
        better = (
            self.solution is None
            or name is None
            or self.value_of(name, values) < self.value_of(name, self.solution)
        )
        if better:
            self.solution = values
            self.own_solution = True
        return better

    def improve_in_windows(
        self, name: str, windows: Sequence[np.ndarray], tolerance: float, until: float
    ) -> bool:
        """Improve the plan in hand one window of columns at a time (fix and optimise).

        For each window every column outside it is fixed at the plan's value, so HiGHS's
        presolve leaves a MIP the size of the window, and ``name`` is minimised there
        within ``tolerance``; a better plan replaces the one in hand and is the next
        window's start. Each window may use an equal share of the time to ``until``
        (a ``time.monotonic()`` value, at most :attr:`deadline`); the bounds in force
        before are restored after.

        On the week from 2026-03-20 at 1 h (``benchmarks/bench_dispatch.py --week``)
        the business stage's packed start was worth 60.22 value units against a
        relaxed bound of 62.35; from there branch and bound had not proven the tier in
        27 s. The six days with a fractional relay, one window each, take it within
        the tier's tolerance of its relaxed bound in ≈ 0.9 s (to 62.05 against 62.73,
        tolerance 0.7): proven without branching.

        Returns
        -------
        bool
            Whether the plan in hand was improved.
        """
        if self.solution is None or not self.own_solution or not windows:
            return False
        highs = self.highs
        lp = highs.getLp()
        lower, upper = np.array(lp.col_lower_), np.array(lp.col_upper_)
        every = np.arange(len(self.columns), dtype=np.int32)
        self._minimise(name, tolerance)
        stage_deadline, until, improved = self.deadline, min(until, self.deadline), False
        for left, window in zip(range(len(windows), 0, -1), windows, strict=True):
            now = time.monotonic()
            if until <= now:
                break
            self.deadline = now + (until - now) / left
            outside = np.ones(every.size, dtype=bool)
            outside[window] = False
            fixed = np.clip(self.solution, lower, upper)
            highs.changeColsBounds(
                every.size, every, np.where(outside, fixed, lower), np.where(outside, fixed, upper)
            )
            highs.setSolution(self._full_solution())
            finished, _ = self._run()
            if not finished:
                self.abandoned = True  # HiGHS still runs: the instance is not touched again
                return improved
            if not self._found():
                continue
            values = self._snapped()
            if self.value_of(name, values) < self.value_of(name, self.solution):
                self.solution, improved = values, True
        self.deadline = stage_deadline
        highs.changeColsBounds(every.size, every, lower, upper)
        return improved

    def fix_value(self, name: str, value: float, tolerance: float) -> None:
        """Constrain an objective to at most ``value + tolerance`` (its stage is done)."""
        cost = self._costs[name]
        nonzero = np.flatnonzero(cost)
        upper = value - self._offsets[name] + tolerance + ROW_SLACK * max(1.0, abs(value))
        self._rows.append(int(self.highs.getNumRow()))
        self.highs.addRow(
            -INF,
            upper,
            nonzero.size,
            nonzero.astype(np.int32),
            cost[nonzero].astype(np.float64),
        )
        self.values[name] = value
        self.tolerances[name] = tolerance

    def pin_off(self, variables: Sequence[pyo.Var]) -> None:
        """Hold free binaries at 0 until :meth:`unpin` (a lower tier's relays, unit off).

        A unit off consumes nothing and surplus can always be curtailed, so a higher
        tier can never gain from a lower tier's binary being 1 (see
        :func:`dispatch.model.tier_binaries`): its optimum is the same with them held
        off, and HiGHS branches on the tier's own binaries only.
        """
        position = [self._position.get(id(v), -1) for v in variables]
        index = np.array([i for i in position if i >= 0 and self.integer[i]], dtype=np.int32)
        if index.size == 0:
            return
        self._upper_now[index] = 0.0
        self.highs.changeColsBounds(
            index.size, index, self._col_lower[index], self._upper_now[index]
        )

    def unpin(self) -> None:
        """Release every binary :meth:`pin_off` held (those not fixed since)."""
        index = np.flatnonzero(self.integer & (self._upper_now != self._col_upper)).astype(np.int32)
        if index.size:
            self._upper_now[index] = self._col_upper[index]
            self.highs.changeColsBounds(
                index.size, index, self._col_lower[index], self._upper_now[index]
            )

    def release_values(self) -> None:
        """Drop every tier row fixed so far (the plan in hand stays the start)."""
        if self._rows:
            index = np.array(self._rows, dtype=np.int32)
            self.highs.deleteRows(index.size, index)
        self._rows = []
        self.values = {}
        self.tolerances = {}

    def fix_integers(self, variables: Sequence[pyo.Var] | None = None) -> None:
        """Fix integer columns at the current solution's value (all by default).

        Parameters
        ----------
        variables : sequence of pyomo variable data, optional
            The binaries a solved tier decided; with all fixed the rest is an LP.
        """
        if self.solution is None:
            return
        if variables is None:
            index = np.flatnonzero(self.integer)
        else:
            position = [self._position.get(id(v), -1) for v in variables]
            index = np.array([i for i in position if i >= 0 and self.integer[i]], dtype=int)
        if index.size == 0:
            return
        index = index.astype(np.int32)
        value = np.round(self.solution[index])
        self.highs.changeColsBounds(index.size, index, value, value)
        self.highs.changeColsIntegrality(index.size, index, np.zeros(index.size, dtype=np.int32))
        self.integer[index] = False

    def _full_solution(self) -> highspy.HighsSolution:
        solution = highspy.HighsSolution()
        solution.col_value = list(self.solution) if self.solution is not None else []
        solution.value_valid = True
        return solution

    def solve(
        self, name: str, tolerance: float, *, relax: bool = False, fix: bool = True
    ) -> StageReport:
        """Minimise one objective subject to the stages fixed before it.

        A relaxed stage that is to be fixed, whose LP solution is fractional while a
        plan is in hand, is solved again as a MIP (with the LP's bound it is quick), so
        that the plan kept always satisfies every row fixed so far.
        """
        report = self._solve(name, tolerance, relax=relax, fix=fix)
        if relax and fix and report.status is SolverStatus.OPTIMAL and name not in self.values:
            report = self._solve(name, tolerance, relax=False, fix=True)
        return report

    def _solve(
        self, name: str, tolerance: float, *, relax: bool = False, fix: bool = True
    ) -> StageReport:
        """Minimise one objective subject to the stages fixed before it (one HiGHS run).

        Parameters
        ----------
        name : str
            The objective (``objective_<name>`` in the model).
        tolerance : float
            Absolute gap accepted, in the objective's units; the accepted value plus
            this becomes a row for the later stages when ``fix``.
        relax : bool
            Solve the LP relaxation; its solution is not kept. With ``fix``, only for
            objectives whose relaxed optimum is the MIP's (the binaries cannot help).
        fix : bool
            Add the accepted value as a row for later stages.

        Returns
        -------
        StageReport
            With the value at the accepted solution. Without a new solution the
            previous one (feasible here) is kept and its value reported.
        """
        if self.abandoned or self.deadline <= time.monotonic():
            return StageReport(
                name, SolverStatus.NO_SOLUTION, np.nan, np.nan, tolerance, 0, 0, 0.0, "not run"
            )
        highs = self.highs
        self._minimise(name, tolerance)
        saved_integrality = None
        if relax and self.integer.any():
            saved_integrality = np.flatnonzero(self.integer).astype(np.int32)
            highs.changeColsIntegrality(
                saved_integrality.size,
                saved_integrality,
                np.zeros(saved_integrality.size, dtype=np.int32),
            )
        elif self.own_solution and self.solution is not None and self.integer.any():
            highs.setSolution(self._full_solution())
        finished, run_s = self._run()
        if not finished:
            self.abandoned = True
            return StageReport(
                name, SolverStatus.FAILED, np.nan, np.nan, tolerance, 0, 0, run_s, "abandoned"
            )
        status_text = highs.modelStatusToString(highs.getModelStatus())
        info = highs.getInfo()
        has_solution = self._found()
        status = SolverStatus.from_highs(status_text, has_solution)
        integer = self.integer.any() and not relax
        bound = float(info.mip_dual_bound) if integer else float(info.objective_function_value)
        if (
            integer
            and has_solution
            and float(info.objective_function_value) - bound <= tolerance * (1 + 1e-9)
        ):
            status = SolverStatus.OPTIMAL  # stopped by our gap check: proven all the same
        report_kw: dict[str, Any] = {
            "iterations": int(max(info.simplex_iteration_count, 0)),
            "nodes": int(max(info.mip_node_count, 0)) if integer else 0,
            "highs_s": run_s,
            "highs_status": status_text,
        }
        if saved_integrality is not None:
            highs.changeColsIntegrality(
                saved_integrality.size,
                saved_integrality,
                np.ones(saved_integrality.size, dtype=np.int32),
            )
        if not has_solution:
            if self.solution is None:
                return StageReport(name, status, np.nan, bound, tolerance, **report_kw)
            # Stopped before beating the plan in hand: that plan's value is this tier's.
            value = self.value_of(name, self.solution)
            if fix and not relax and self.own_solution:
                self.fix_value(name, value, tolerance)
            return StageReport(name, status, value, bound, tolerance, **report_kw)
        values = np.asarray(highs.getSolution().col_value, dtype=np.float64)
        value = self.value_of(name, values)
        if relax:
            self.relaxed = values
            # A relaxed stage is fixed only where its optimum equals the MIP's.
            binaries = values[self.integer]
            if fix and status is SolverStatus.OPTIMAL:
                if np.allclose(binaries, np.round(binaries), atol=1e-9):
                    # Integral: a plan, and the next stage's MIP start.
                    values[self.integer] = np.round(binaries)
                    self.solution = values
                    self.own_solution = True
                    self.fix_value(name, value, tolerance)
                elif self.solution is None:
                    # No plan yet that the row could cut off: fix the exact value only.
                    self.fix_value(name, value, tolerance)
            return StageReport(name, status, value, bound, tolerance, **report_kw)
        if integer:
            # HiGHS returns integers within its integrality tolerance: snap them.
            values[self.integer] = np.round(values[self.integer])
        if not integer and status is SolverStatus.TIME_LIMIT:
            # An LP stopped early has no proven bound: keep the solution, but the
            # stage's own optimum is not known.
            bound = np.nan
        self.solution = values
        self.own_solution = True
        if fix:
            self.fix_value(name, value, tolerance)
        return StageReport(name, status, value, bound, tolerance, **report_kw)

    def _minimise(self, name: str | None, tolerance: float) -> None:
        """Set the objective HiGHS minimises (none: any plan) and the absolute gap it stops at."""
        every = np.arange(len(self.columns), dtype=np.int32)
        cost = np.zeros(every.size) if name is None else self._costs[name]
        self.highs.changeColsCost(every.size, every, cost)
        self.highs.changeObjectiveOffset(0.0 if name is None else self._offsets[name])
        self.highs.setOptionValue("mip_abs_gap", float(tolerance))
        self._tolerance = float(tolerance)

    def _found(self) -> bool:
        """Whether HiGHS's last run left a feasible solution."""
        status = self.highs.getInfo().primal_solution_status
        return int(status) == int(highspy.SolutionStatus.kSolutionStatusFeasible)

    def _snapped(self) -> np.ndarray:
        """HiGHS's solution, its integers snapped (HiGHS keeps them within a tolerance)."""
        values = np.asarray(self.highs.getSolution().col_value, dtype=np.float64)
        values[self.integer] = np.round(values[self.integer])
        return values

    def _run(self) -> tuple[bool, float]:
        """Run HiGHS until it finishes or the deadline; (finished, wall time [s])."""
        remaining = self.deadline - time.monotonic()
        begin = time.perf_counter()
        if remaining <= 0:
            return False, 0.0
        # The time limit is a second guard; HiGHS checks it less often than callbacks.
        # HiGHS's clock is cumulative per instance, so the limit is too.
        elapsed = float(self.highs.getRunTime())
        self.highs.setOptionValue("time_limit", elapsed + max(remaining, 1e-3))
        self._stopped.clear()
        worker = threading.Thread(target=self.highs.run, name="highs", daemon=True)
        worker.start()
        worker.join(timeout=remaining)
        if worker.is_alive():
            self._stopped.set()
            worker.join(timeout=INTERRUPT_GRACE_S)
        if worker.is_alive():
            _ABANDONED.append(worker)
        run_s = time.perf_counter() - begin
        self.highs_s += run_s
        return not worker.is_alive(), run_s

    def load(self, model: pyo.ConcreteModel) -> bool:
        """Load the accepted solution into the model's variables; False without one."""
        del model  # the columns are the model's own variable objects
        if self.solution is None:
            return False
        for var, x in zip(self.columns, self.solution.tolist(), strict=True):
            var.set_value(x, skip_validation=True)
        return True


def _pass_model(highs: highspy.Highs, form: object) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hand the standard form's arrays to HiGHS (column-wise sparse matrix), zero costs.

    Returns
    -------
    integer : numpy.ndarray
        Which columns are integer (bool).
    lower, upper : numpy.ndarray
        The columns' bounds as passed.
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
        0.0,
        np.zeros(n_cols),
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
    return integrality.astype(bool), col_lower, col_upper
