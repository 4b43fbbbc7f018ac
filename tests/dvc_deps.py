"""Which first-party module files a DVC stage's command executes, found statically with `ast`.

Reachability at function granularity, because fmnist imports almost everything inside
functions. A reached module runs its body (imports, decorators, defaults, class bodies; not
function bodies, not `if TYPE_CHECKING:` blocks). A reached function or class is scanned
whole (nested functions, every branch): its imports run, and each name it uses reaches the
definition it resolves to (`from m import f; f()`, `import m as t; t.f()`, `from p import m;
m.f()`) or, for a name defined in its own module, that definition. Unsure: the whole module.
Annotations count where they may be evaluated: class fields (pydantic), the signatures of
reached functions (Typer reads them), a module's signatures unless it has
`from __future__ import annotations`. Code run by path or in a string is not seen.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator, Sequence, Set
from dataclasses import dataclass, field
from pathlib import Path

Symbol = tuple[str, str | None]  # (module, top-level name); None: the module's own body
Ref = tuple[str, tuple[str, ...]]  # a name as used, with its attribute chain: t.f -> (t, (f,))
ALL = "*"  # a Symbol name: every top-level definition of the module


@dataclass
class Module:
    name: str  # fmnist.core.idx
    path: Path
    tree: ast.Module
    defs: dict[str, list[ast.stmt]] = field(default_factory=dict)  # top-level name -> stmts
    imports: list[ast.Import | ast.ImportFrom] = field(default_factory=list)  # run at import
    bindings: dict[str, list[Symbol]] = field(default_factory=dict)  # names those imports bind

    @property
    def package(self) -> str:
        """What a relative import is relative to."""
        return self.name if self.path.name == "__init__.py" else self.name.rpartition(".")[0]

    @property
    def lazy_annotations(self) -> bool:
        """`from __future__ import annotations`: signatures are not evaluated at def time."""
        return any(
            isinstance(s, ast.ImportFrom)
            and s.module == "__future__"
            and any(a.name == "annotations" for a in s.names)
            for s in self.tree.body
        )


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runs_at_import(body: Iterable[ast.stmt]) -> Iterator[ast.stmt]:
    """A module's top-level statements, if/try/with blocks flattened, TYPE_CHECKING skipped."""
    for stmt in body:
        if isinstance(stmt, ast.If):
            yield from [] if _is_type_checking(stmt.test) else _runs_at_import(stmt.body)
            yield from _runs_at_import(stmt.orelse)
        elif isinstance(stmt, ast.Try):
            handlers = [s for h in stmt.handlers for s in h.body]
            yield from _runs_at_import([*stmt.body, *handlers, *stmt.orelse, *stmt.finalbody])
        elif isinstance(stmt, ast.With):
            yield from _runs_at_import(stmt.body)
        else:
            yield stmt


def index_modules(src: Path) -> dict[str, Module]:
    """Every module under src (each top-level package or module there is first-party)."""
    modules = {}
    for path in sorted(src.rglob("*.py")):
        parts = path.relative_to(src).with_suffix("").parts
        parts = parts[:-1] if parts[-1] == "__init__" else parts
        module = Module(".".join(parts), path, ast.parse(path.read_bytes(), str(path)))
        for stmt in _runs_at_import(module.tree.body):
            if isinstance(stmt, ast.Import | ast.ImportFrom):
                module.imports.append(stmt)
            for name in _defined_names(stmt):
                module.defs.setdefault(name, []).append(stmt)
        module.bindings = _bindings(module, module.imports)
        modules[module.name] = module
    return modules


def _defined_names(stmt: ast.stmt) -> list[str]:
    if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return [stmt.name]
    if isinstance(stmt, ast.Assign | ast.AnnAssign | ast.AugAssign):
        targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
        return [n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]
    return []


class _Scan(ast.NodeVisitor):
    """The names and imports of code as it runs: function bodies only when `bodies`."""

    def __init__(self, *, bodies: bool, annotations: bool) -> None:
        self.bodies, self.annotations = bodies, annotations
        self.refs: list[Ref] = []
        self.imports: list[ast.Import | ast.ImportFrom] = []

    def visit_Import(self, node: ast.Import | ast.ImportFrom) -> None:
        self.imports.append(node)

    visit_ImportFrom = visit_Import

    def visit_Name(self, node: ast.Name) -> None:
        if not isinstance(node.ctx, ast.Store):
            self.refs.append((node.id, ()))

    def visit_Attribute(self, node: ast.Attribute) -> None:
        chain: list[str] = []
        base: ast.expr = node
        while isinstance(base, ast.Attribute):
            chain.insert(0, base.attr)
            base = base.value
        if isinstance(base, ast.Name):
            self.refs.append((base.id, tuple(chain)))
        else:
            self.visit(base)

    def visit_If(self, node: ast.If) -> None:
        if not _is_type_checking(node.test):
            self.visit(node.test)
            self._visit_all(node.body)
        self._visit_all(node.orelse)

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        args = node.args
        self._visit_all([*node.decorator_list, *args.defaults, *filter(None, args.kw_defaults)])
        if self.annotations:
            every = [*args.posonlyargs, *args.args, args.vararg, *args.kwonlyargs, args.kwarg]
            self._visit_all([a.annotation for a in every if a and a.annotation])
            self._visit_all([node.returns] if node.returns else [])
        if self.bodies:
            self._visit_all(node.body)

    visit_AsyncFunctionDef = visit_FunctionDef

    def _visit_all(self, nodes: Iterable[ast.AST]) -> None:
        for node in nodes:
            self.visit(node)


def _absolute(module: Module, imp: ast.ImportFrom) -> str:
    """The module a `from ... import` names, relative imports resolved."""
    if not imp.level:
        return imp.module or ""
    parts = module.package.split(".")
    parts = parts[: len(parts) - (imp.level - 1)]
    return ".".join([*parts, *([imp.module] if imp.module else [])])


def _imported_modules(module: Module, imp: ast.Import | ast.ImportFrom) -> list[str]:
    """The modules whose bodies an import runs (their parent packages aside)."""
    if isinstance(imp, ast.Import):
        return [alias.name for alias in imp.names]
    base = _absolute(module, imp)
    return [base, *(f"{base}.{alias.name}" for alias in imp.names)]  # submodules by name


def _bindings(
    module: Module, imports: Iterable[ast.Import | ast.ImportFrom]
) -> dict[str, list[Symbol]]:
    """Name -> what it is bound to: `import a.b` binds a -> (a, None), `import a.b as t`
    t -> (a.b, None), `from a import f` f -> (a, f) (a submodule if a.f is one)."""
    bound: dict[str, list[Symbol]] = {}
    for imp in imports:
        for alias in imp.names:
            if isinstance(imp, ast.Import):
                target: Symbol = (alias.name if alias.asname else alias.name.split(".")[0], None)
                local = alias.asname or alias.name.split(".")[0]
            else:
                target, local = (_absolute(module, imp), alias.name), alias.asname or alias.name
            bound.setdefault(local, []).append(target)
    return bound


@dataclass
class Reachability:
    """What runs from some entry points: reach() each, then read `files`."""

    modules: dict[str, Module]
    files: set[Path] = field(default_factory=set)
    _seen: set[Symbol] = field(default_factory=set)
    _todo: list[Symbol] = field(default_factory=list)

    def reach(self, module: str, name: str | None = None) -> None:
        """Import module (name None) or run its top-level `name`, and all that follows."""
        self._push(module, name)
        while self._todo:
            self._visit(*self._todo.pop())

    def _push(self, module: str, name: str | None = None) -> None:
        if module in self.modules and (module, name) not in self._seen:
            self._seen.add((module, name))
            self._todo.append((module, name))

    def _push_import(self, dotted: str) -> None:
        """`import a.b.c` runs a/__init__.py, a/b/__init__.py, then a/b/c."""
        parts = dotted.split(".")
        for i in range(1, len(parts) + 1):
            self._push(".".join(parts[:i]))

    def _visit(self, name_of_module: str, name: str | None) -> None:
        module = self.modules[name_of_module]
        self._push_import(name_of_module)  # to run anything of it, it is imported
        if name is None:
            self.files.add(module.path)
            self._scan(module, module.tree.body, bodies=False)
            return
        names = [*module.defs, *module.bindings] if name == ALL else [name]
        for n in names:
            self._scan(module, module.defs.get(n, []), bodies=True)
            for target in module.bindings.get(n, []):  # imported into module, used from outside
                self._reach_attribute(target, ())
        self._push(f"{name_of_module}.{name}")  # a submodule, as an attribute of its package

    def _scan(self, module: Module, nodes: Sequence[ast.AST], *, bodies: bool) -> None:
        scan = _Scan(bodies=bodies, annotations=bodies or not module.lazy_annotations)
        for node in nodes:
            scan.visit(node)
        for imp in scan.imports:
            for dotted in _imported_modules(module, imp):
                self._push_import(dotted)
            if any(alias.name == "*" for alias in imp.names):
                self._push(_absolute(module, imp), ALL)
        local = _bindings(module, scan.imports)
        for name, chain in scan.refs:
            targets = local.get(name, []) + module.bindings.get(name, [])
            for target in targets:
                self._reach_attribute(target, chain)
            if not targets and name in module.defs:
                self._push(module.name, name)

    def _reach_attribute(self, target: Symbol, chain: tuple[str, ...]) -> None:
        """What `name.a.b` reaches when name is bound to target: (m, a) for a module m,
        through submodules; a module used as a whole (passed, returned) reaches all of it."""
        module, name = target
        if name is not None and f"{module}.{name}" not in self.modules:
            self._push(module, name)
            return
        if name is not None:
            module = f"{module}.{name}"
        for attr in chain:
            if f"{module}.{attr}" not in self.modules:
                self._push(module, attr)
                return
            module = f"{module}.{attr}"
        self._push(module, ALL)


def typer_command(module: Module, command: str, app: str = "app") -> str:
    """The function behind `command` of the Typer app: `@app.command("name")`, else the
    function's own name (Typer's default: underscores become dashes)."""
    for stmt in module.tree.body:
        if not isinstance(stmt, ast.FunctionDef):
            continue
        for deco in stmt.decorator_list:
            func = deco.func if isinstance(deco, ast.Call) else deco
            if not (isinstance(func, ast.Attribute) and func.attr == "command"):
                continue
            if not (isinstance(func.value, ast.Name) and func.value.id == app):
                continue
            given = [a.value for a in getattr(deco, "args", [])[:1] if isinstance(a, ast.Constant)]
            if (given[0] if given else stmt.name.replace("_", "-")) == command:
                return stmt.name
    raise LookupError(f"{module.path}: no command {command!r} on {app}")


def command_files(src: Path, entry: str, command: str) -> set[Path]:
    """The first-party files `<script> <command>` executes; entry is the script's
    `module:function` (pyproject's [project.scripts]), command a Typer command of that
    module's package."""
    modules = index_modules(src)
    module, _, function = entry.partition(":")
    reach = Reachability(modules)
    reach.reach(module, function)
    holder, name = command_function(modules, module, command)
    reach.reach(holder, name)
    for symbol in app_callbacks(modules, module):  # Typer runs them before every command
        reach.reach(*symbol)
    return reach.files


def app_callbacks(modules: dict[str, Module], package: str) -> list[Symbol]:
    """Functions of package's modules decorated `@<x>.callback(...)` (Typer app options)."""
    found: list[Symbol] = []
    for name, module in sorted(modules.items()):
        if name != package and not name.startswith(package + "."):
            continue
        for stmt in module.tree.body:
            decorators = stmt.decorator_list if isinstance(stmt, ast.FunctionDef) else []
            for deco in decorators:
                func = deco.func if isinstance(deco, ast.Call) else deco
                if isinstance(func, ast.Attribute) and func.attr == "callback":
                    found.append((name, stmt.name))
    return found


def command_function(modules: dict[str, Module], package: str, command: str) -> Symbol:
    """(module, function) of a Typer command defined in package or one of its modules (the
    entry imports the module that holds it)."""
    for name in sorted(modules):
        if name == package or name.startswith(package + "."):
            try:
                return name, typer_command(modules[name], command)
            except LookupError:
                continue
    raise LookupError(f"{package}: no command {command!r}")


@dataclass(frozen=True)
class DepCheck:
    missing: list[str]  # executed files that no dep covers
    unexecuted: list[str]  # module deps (under src/) that cover no executed file

    @property
    def ok(self) -> bool:
        return not self.missing and not self.unexecuted


def covers(dep: str, path: str) -> bool:
    """A dep covers a file: it is the file, or a directory holding it (a package shipped
    whole, e.g. as MLflow `code_paths`)."""
    return path == dep or path.startswith(dep.rstrip("/") + "/")


def check_deps(deps: Sequence[str], executed: Set[str], src: str = "src") -> DepCheck:
    """A stage's deps against the files its command executes (both relative to the repo)."""
    return DepCheck(
        missing=sorted(f for f in executed if not any(covers(d, f) for d in deps)),
        unexecuted=[d for d in deps if covers(src, d) and not any(covers(d, f) for f in executed)],
    )


def module_deps(executed: Set[str], shipped: Sequence[str] = ()) -> list[str]:
    """The module deps a stage should list: its executed files, sorted, those inside a
    package it ships whole folded into that package's folder."""
    return sorted({next((d for d in shipped if covers(d, f)), f) for f in executed})
