# isolint verify probe: runs one check on one extension module in this process.
#
#   python -X faulthandler probe.py CHECK TARGET OPTIONS_JSON
#
# Standard library only. It prints "##isolint-stage <text>" lines on stderr
# before every risky step, so that a crash can be placed, and one
# "##isolint-result <json>" line on stdout when the check completes.
# Sub-interpreters receive their inputs baked into the code string: passing
# `shared=` segfaults 3.13.0. They report back through files, because
# channels and queues differ between versions.

import ast
import gc
import json
import os
import sys
import tempfile
import traceback

STAGE = "##isolint-stage "
RESULT = "##isolint-result "


def stage(text):
    os.write(2, (STAGE + text + "\n").encode("utf-8", "replace"))


def emit(status, detail="", **data):
    out = {"status": status, "detail": detail}
    out.update(data)
    os.write(1, (RESULT + json.dumps(out, sort_keys=True) + "\n").encode())


# COMMON runs in the main interpreter and in every sub-interpreter, so that
# both sides load and walk the module the same way.
COMMON = r'''
import builtins as _iso_builtins
import os as _iso_os
import sys as _iso_sys
import types as _iso_types


def _iso_stage(text):
    _iso_os.write(2, ("##isolint-stage " + text + "\n").encode("utf-8", "replace"))


def _iso_load(target, name):
    if name in _iso_sys.modules:
        return _iso_sys.modules[name]
    if target != name:
        import importlib.util
        spec = importlib.util.spec_from_file_location(name, target)
        if spec is None:
            raise ImportError("cannot load " + target)
        mod = importlib.util.module_from_spec(spec)
        _iso_sys.modules[name] = mod
        try:
            spec.loader.exec_module(mod)
        except BaseException:
            del _iso_sys.modules[name]
            raise
        return mod
    import importlib
    return importlib.import_module(name)


_ISO_IMMUTABLE = (int, float, complex, str, bytes, bool, type(None),
                  type(Ellipsis), type(NotImplemented))
_ISO_SKIP_KEYS = {"__builtins__", "__loader__", "__spec__", "__name__",
                  "__file__", "__package__", "__path__", "__cached__"}


def _iso_immortal(obj):
    check = getattr(_iso_sys, "_is_immortal", None)
    if check is not None:
        return check(obj)
    if _iso_sys.version_info < (3, 12):
        return False
    return _iso_sys.getrefcount(obj) >= (1 << 30)


def _iso_core_ids():
    ids = set()
    for ns in (vars(_iso_builtins), vars(_iso_types)):
        for value in ns.values():
            if isinstance(value, type):
                ids.add(id(value))
    return ids


def _iso_walk(mod, name, limit=4000, objects=None):
    """Every object reachable from the module that the module owns:
    attributes, its types and their dicts, exception classes, and the
    contents of containers hanging off them. Returns
    {path: [id, type name, parent path or None]}; `objects`, when given,
    receives {path: object}."""
    core = _iso_core_ids()
    own_names = {name, name.rpartition(".")[2]}
    root = name.partition(".")[0]
    stdlib = getattr(_iso_sys, "stdlib_module_names", frozenset())

    def foreign_type(tp):
        if id(tp) in core:
            return True
        owner = getattr(tp, "__module__", None)
        if not isinstance(owner, str) or owner in own_names:
            return False
        top = owner.partition(".")[0]
        # A stdlib accelerator (`_datetime`) names its types after the public
        # module (`datetime`); only third-party targets disown stdlib types.
        if root in stdlib:
            return False
        return top != root and top != "builtins" and top in stdlib

    def skip_value(obj):
        if isinstance(obj, type):
            return foreign_type(obj)
        if isinstance(obj, _iso_types.ModuleType):
            return True
        # A builtin function bound to another module is not ours; one bound to
        # an older instance of this module (a copied single-phase dict) is.
        owner = getattr(obj, "__self__", None)
        if isinstance(owner, _iso_types.ModuleType) and getattr(owner, "__name__", None) != name:
            return True
        if _iso_sys.version_info < (3, 12):
            # No immortality marker: interned strings and small ints are
            # process-wide, so immutable scalars cannot be judged here.
            return isinstance(obj, _ISO_IMMUTABLE) or obj == ()
        return _iso_immortal(obj)

    found = {}
    seen = {id(mod)}
    queue = []

    def push(path, obj, parent, depth):
        if len(found) >= limit or id(obj) in seen or skip_value(obj):
            return
        seen.add(id(obj))
        found[path] = [id(obj), type(obj).__qualname__, parent]
        if objects is not None:
            objects[path] = obj
        queue.append((path, obj, depth))

    for key, value in list(vars(mod).items()):
        if key.startswith("__") and key.endswith("__"):
            continue
        push(key, value, None, 0)
    while queue:
        path, obj, depth = queue.pop(0)
        if depth >= 4:
            continue
        if isinstance(obj, type):
            for key, value in list(vars(obj).items()):
                if key in _ISO_SKIP_KEYS:
                    continue
                push(path + "." + key, value, path, depth + 1)
            for i, base in enumerate(obj.__mro__[1:], 1):
                push(path + ".__mro__[%d]" % i, base, path, depth + 1)
        elif isinstance(obj, dict):
            for i, (key, value) in enumerate(list(obj.items())[:64]):
                label = key if isinstance(key, str) else "#%d" % i
                push("%s[%r]" % (path, label), value, path, depth + 1)
        elif isinstance(obj, (list, tuple, set, frozenset)):
            items = list(obj)[:64] if not isinstance(obj, (set, frozenset)) else []
            for i, value in enumerate(items):
                push("%s[%d]" % (path, i), value, path, depth + 1)
        else:
            tp = type(obj)
            if getattr(tp, "__module__", None) in own_names:
                push(path + ".__class__", tp, path, depth + 1)
    return found


def _iso_names(mod):
    return sorted(k for k in vars(mod) if not (k.startswith("__") and k.endswith("__")))


def _iso_exercise(mod, source, filename):
    code = compile(source, filename, "exec")
    exec(code, {"__name__": "__isolint_exercise__", "MODULE": mod,
                "__builtins__": _iso_builtins})


def _iso_report(path, value):
    with open(path, "w", encoding="utf-8") as f:
        f.write(repr(value))
'''

exec(COMMON)


# ---------------------------------------------------------------- backends


class Backend:
    """One Python version's way of making and running sub-interpreters."""

    def __init__(self):
        self.name = None
        self.own_gil = False
        self.low = None
        self.high = None
        self.ids = {}
        try:
            import concurrent.interpreters as high  # 3.14+
            import _interpreters as low
            self.name, self.high, self.low, self.own_gil = "concurrent.interpreters", high, low, True
            return
        except ImportError:
            pass
        try:
            import _interpreters as low  # 3.13
            self.name, self.low, self.own_gil = "_interpreters", low, True
            return
        except ImportError:
            pass
        try:
            import _xxsubinterpreters as low  # 3.11, 3.12
            self.name, self.low = "_xxsubinterpreters", low
            self.own_gil = sys.version_info >= (3, 12)
        except ImportError:
            pass

    def modes(self):
        if self.name is None:
            return []
        return ["isolated", "legacy"] if self.own_gil else ["legacy"]

    def create(self, mode):
        if mode == "isolated" and not self.own_gil:
            raise RuntimeError("this Python has no own-GIL interpreters")
        if self.high is not None and mode == "isolated":
            interp = self.high.create()
            self.ids[interp.id] = interp
            return interp.id
        if self.name in ("_interpreters", "concurrent.interpreters"):
            return self.low.create(mode)
        return self.low.create(isolated=(mode == "isolated"))

    def run(self, iid, code):
        """Returns None on success, else the text of the exception."""
        interp = self.ids.get(iid)
        if interp is not None:
            try:
                interp.exec(code)
            except Exception as exc:
                info = getattr(exc, "excinfo", None)
                return getattr(info, "formatted", None) or str(exc)
            return None
        if self.name in ("_interpreters", "concurrent.interpreters"):
            info = self.low.exec(iid, code)
            if info is None:
                return None
            return getattr(info, "errdisplay", None) or getattr(info, "formatted", None) or str(info)
        try:
            self.low.run_string(iid, code)
        except Exception as exc:
            return str(exc)
        return None

    def destroy(self, iid):
        interp = self.ids.pop(iid, None)
        if interp is not None:
            interp.close()
        else:
            self.low.destroy(iid)


# ---------------------------------------------------------------- helpers


class Ctx:
    def __init__(self, target, opts):
        self.target = target
        self.opts = opts
        self.name = opts.get("name") or target
        self.backend = Backend()
        self._tmp = None
        self.exercise = None
        path = opts.get("exercise")
        if path:
            with open(path, encoding="utf-8") as f:
                self.exercise = (f.read(), path)
        self.counter = 0

    @property
    def tmp(self):
        # Under isolint's own run directory, which it removes even after a crash.
        if self._tmp is None:
            self._tmp = tempfile.mkdtemp(prefix="child-", dir=self.opts.get("tmp"))
        return self._tmp

    def load(self):
        return _iso_load(self.target, self.name)

    def sub_code(self, out, walk=True, exercise=False, repeat=1, label="sub-interpreter"):
        """Code that loads the module in a sub-interpreter and reports to `out`."""
        lines = [COMMON, "_iso_out = {}",
                 "if %r not in _iso_sys.path: _iso_sys.path.insert(0, %r)" % (sys.path[0], sys.path[0])]
        lines.append("try:")
        lines.append("    mod = _iso_load(%r, %r)" % (self.target, self.name))
        if walk:
            lines.append("    _iso_out['walk'] = _iso_walk(mod, %r)" % self.name)
            lines.append("    _iso_out['names'] = _iso_names(mod)")
        if exercise and self.exercise:
            src, path = self.exercise
            lines.append("    _iso_stage(%r)" % (label + ": exercise"))
            lines.append("    for _iso_i in range(%d):" % repeat)
            lines.append("        _iso_exercise(mod, %r, %r)" % (src, path))
        lines.append("except BaseException as _iso_exc:")
        lines.append("    import traceback as _iso_tb")
        lines.append("    _iso_out['error'] = [type(_iso_exc).__name__, str(_iso_exc),")
        lines.append("                         ''.join(_iso_tb.format_exception(_iso_exc))[-4000:]]")
        lines.append("_iso_report(%r, _iso_out)" % out)
        return "\n".join(lines) + "\n"

    def in_sub(self, iid, walk=True, exercise=False, repeat=1, label="sub-interpreter"):
        """Load (and walk / exercise) in a live sub-interpreter; returns its report."""
        self.counter += 1
        out = os.path.join(self.tmp, "sub%d.txt" % self.counter)
        err = self.backend.run(iid, self.sub_code(out, walk, exercise, repeat, label))
        if err is not None:
            return {"error": ["RunFailed", err.strip().splitlines()[-1] if err.strip() else err, err]}
        try:
            with open(out, encoding="utf-8") as f:
                return ast.literal_eval(f.read())
        except OSError:
            return {"error": ["NoReport", "the sub-interpreter wrote no report", ""]}


REFUSAL = "does not support loading in subinterpreters"


def classify_error(ctx, error):
    """(status, detail, refused_by) for an exception raised while importing."""
    kind, msg, text = error
    if REFUSAL in msg or REFUSAL in text:
        import re
        m = re.search(r"module (\S+) does not support loading in subinterpreters", msg + "\n" + text)
        who = m.group(1) if m else None
        mine = who is None or who in (ctx.name, ctx.name.rpartition(".")[2])
        if mine:
            return "refused", "the module refuses this interpreter: " + msg, who or ctx.name
        return ("inconclusive",
                "import refused by dependency %s, not by the module itself: %s" % (who, msg), who)
    return "fail", "%s: %s" % (kind, msg), None


def compare(walks):
    """Names whose object has the same id in two or more interpreters.
    Only the outermost shared object of a chain is listed."""
    labels = list(walks)
    shared = {}
    names = set()
    for w in walks.values():
        names.update(w)
    for path in sorted(names):
        by_id = {}
        for label in labels:
            entry = walks[label].get(path)
            if entry is not None:
                by_id.setdefault(entry[0], []).append(label)
        groups = [g for g in by_id.values() if len(g) > 1]
        if groups:
            some = next(walks[label][path] for label in labels if path in walks[label])
            shared[path] = {"type": some[1], "parent": some[2], "interpreters": groups[0]}
    out = []
    for path in sorted(shared):
        parent = shared[path]["parent"]
        while parent is not None and parent not in shared:
            parent = next((walks[l][parent][2] for l in labels if parent in walks[l]), None)
        if parent is None:
            out.append({"name": path, "type": shared[path]["type"],
                        "interpreters": shared[path]["interpreters"],
                        "nested": sum(1 for p in shared if p.startswith(path + ".") or p.startswith(path + "["))})
    return out


def missing(names):
    """Attributes the first interpreter's module has and another one's lacks:
    the mark of an exec function that skips its work after a first run."""
    labels = list(names)
    out = []
    for name in names[labels[0]] if labels else []:
        absent = [label for label in labels[1:] if name not in names[label]]
        if absent:
            out.append({"name": name, "missing_in": absent})
    return out


def module_kind(mod):
    """single-phase / multi-phase, and the Py_mod_multiple_interpreters and
    Py_mod_gil slot values, read from the module's PyModuleDef."""
    info = {"init": "unknown", "multiple_interpreters": None, "gil": None}
    try:
        import ctypes
        get_def = ctypes.pythonapi.PyModule_GetDef
        get_def.restype = ctypes.c_void_p
        get_def.argtypes = [ctypes.py_object]
        ptr = get_def(mod)
        if not ptr:
            ctypes.pythonapi.PyErr_Clear()
            info["init"] = "not-from-def"
            return info
        # PyModuleDef: PyModuleDef_Base (PyObject_HEAD, m_init, m_index,
        # m_copy), m_name, m_doc, m_size, m_methods, m_slots. The header's
        # size differs between builds (free-threaded: 32 bytes, default: 16,
        # Py_TRACE_REFS: 16 more); `object.__basicsize__` is sizeof(PyObject)
        # of the running interpreter.
        word = ctypes.sizeof(ctypes.c_void_p)
        slots = ctypes.c_void_p.from_address(ptr + object.__basicsize__ + 7 * word).value
        if not slots:
            info["init"] = "single-phase"
            return info
        info["init"] = "multi-phase"
        names = {3: "multiple_interpreters", 4: "gil"}
        values = {3: {0: "not-supported", 1: "supported", 2: "per-interpreter-gil"},
                  4: {0: "used", 1: "not-used"}}
        at = slots
        for _ in range(64):
            slot = ctypes.c_int.from_address(at).value
            if slot == 0:
                break
            value = ctypes.c_void_p.from_address(at + word).value or 0
            if slot in names:
                info[names[slot]] = values[slot].get(value, str(value))
            at += 2 * word
    except Exception as exc:  # ctypes missing or refused: the kind stays unknown
        info["error"] = str(exc)
    return info


def touch(mod, name):
    """Reads every owned object once, so dangling statics get dereferenced."""
    walk = _iso_walk(mod, name)
    for key in list(vars(mod)):
        try:
            repr(getattr(mod, key))
        except Exception:
            pass
    return walk


# ---------------------------------------------------------------- checks


def check_info(ctx):
    import sysconfig
    var = sysconfig.get_config_var
    emit("pass", version=list(sys.version_info[:3]),
         implementation=sys.implementation.name,
         backend=ctx.backend.name, own_gil=ctx.backend.own_gil,
         modes=ctx.backend.modes(),
         ext_suffix=var("EXT_SUFFIX"),
         soabi=var("SOABI"),
         executable=sys.executable,
         free_threaded=bool(var("Py_GIL_DISABLED")),
         embed={
             # What `python3.X-config --embed` would print, and where that script lives.
             "config_script": os.path.join(sys.base_prefix, "bin",
                                           "python%s%s-config" % (var("VERSION"),
                                                                  getattr(sys, "abiflags", ""))),
             "include": [p for p in dict.fromkeys([sysconfig.get_paths().get("include"),
                                                   sysconfig.get_paths().get("platinclude")]) if p],
             "libdir": var("LIBDIR"),
             "library": "python" + (var("LDVERSION") or var("VERSION") or ""),
             "libs": " ".join(filter(None, [var("LIBS"), var("SYSLIBS")])),
             "shared": bool(var("Py_ENABLE_SHARED")),
         })


def check_main_import(ctx):
    stage("main: import")
    try:
        mod = ctx.load()
    except ModuleNotFoundError as exc:
        missing = exc.name in (ctx.name, None) or ctx.name.startswith((exc.name or "") + ".")
        emit("fail", "%s: %s" % (type(exc).__name__, exc), not_found=missing)
        return
    except BaseException as exc:
        emit("fail", "%s: %s" % (type(exc).__name__, exc),
             traceback="".join(traceback.format_exception(exc))[-4000:])
        return
    stage("main: inspect")
    kind = module_kind(mod)
    loader = type(getattr(getattr(mod, "__spec__", None), "loader", None)).__name__
    stage("main: walk")
    walk = touch(mod, ctx.name)
    stage("main: done")
    emit("pass", "imported from %s" % getattr(mod, "__file__", "?"), module=kind,
         origin=getattr(mod, "__file__", None), loader=loader, objects=len(walk))


def check_two_instances(ctx):
    import _imp
    import importlib.util
    if ctx.target != ctx.name:
        spec = importlib.util.spec_from_file_location(ctx.name, ctx.target)
    else:
        spec = importlib.util.find_spec(ctx.name)
    if spec is None or type(spec.loader).__name__ != "ExtensionFileLoader":
        emit("n/a", "not an extension module")
        return
    stage("two-instances: create instance 1")
    m1 = _imp.create_dynamic(spec)
    kind = module_kind(m1)
    if kind["init"] != "multi-phase":
        emit("n/a", "%s init: one instance per process by design" % kind["init"], module=kind)
        return
    stage("two-instances: exec instance 1")
    _imp.exec_dynamic(m1)
    stage("two-instances: create instance 2")
    m2 = _imp.create_dynamic(spec)
    stage("two-instances: exec instance 2")
    _imp.exec_dynamic(m2)
    stage("two-instances: compare")
    shared = compare({"first": _iso_walk(m1, ctx.name), "second": _iso_walk(m2, ctx.name)})
    lost = missing({"first": _iso_names(m1), "second": _iso_names(m2)})
    stage("two-instances: free both")
    del m1, m2
    gc.collect()
    stage("two-instances: re-import after both were freed")
    m3 = ctx.load()
    touch(m3, ctx.name)
    stage("two-instances: done")
    problems = []
    if shared:
        problems.append("%d object(s) shared by two instances" % len(shared))
    if lost:
        problems.append("the second instance lacks %s" % ", ".join(m["name"] for m in lost))
    if problems:
        emit("fail", "; ".join(problems), shared=shared, missing=lost, module=kind)
    else:
        emit("pass", "no shared objects; re-import after free ok", shared=[], module=kind)


def check_isolated_import(ctx):
    be = ctx.backend
    if not be.own_gil:
        emit("n/a", "no own-GIL sub-interpreters on this Python (%s)" % (be.name or "no API"))
        return
    stage("isolated-import: create")
    iid = be.create("isolated")
    stage("isolated-import: import")
    rep = ctx.in_sub(iid, walk=True)
    stage("isolated-import: destroy")
    be.destroy(iid)
    stage("isolated-import: done")
    if "error" in rep:
        status, detail, who = classify_error(ctx, rep["error"])
        emit(status, detail, refused_by=who, traceback=rep["error"][2][-4000:])
    else:
        emit("pass", "imported in an own-GIL interpreter", objects=len(rep.get("walk", {})))


def check_shared_objects(ctx):
    be = ctx.backend
    mode = ctx.opts.get("mode", "isolated")
    if mode not in be.modes():
        emit("n/a", "no %s sub-interpreters on this Python" % mode)
        return
    stage("shared-objects: main import")
    mod = ctx.load()
    walks = {"main": _iso_walk(mod, ctx.name)}
    names = {"main": _iso_names(mod)}
    if ctx.exercise:
        stage("shared-objects: exercise in main")
        _iso_exercise(mod, *ctx.exercise)
    ids = []
    failure = None
    for label in ("sub1", "sub2"):
        stage("shared-objects: create %s (%s)" % (label, mode))
        iid = be.create(mode)
        ids.append(iid)
        stage("shared-objects: import in %s" % label)
        rep = ctx.in_sub(iid, walk=True, exercise=True, label="shared-objects: " + label)
        if "error" in rep:
            failure = classify_error(ctx, rep["error"]) + (rep["error"][2],)
            break
        walks[label] = rep["walk"]
        names[label] = rep["names"]
    stage("shared-objects: compare")
    shared = compare(walks) if failure is None else []
    lost = missing(names) if failure is None else []
    for i, iid in enumerate(ids, 1):
        stage("shared-objects: destroy sub%d" % i)
        be.destroy(iid)
    stage("shared-objects: done")
    if failure is not None:
        status, detail, who, text = failure
        emit(status, detail, refused_by=who, mode=mode, traceback=text[-4000:])
    elif shared or lost:
        problems = []
        if shared:
            problems.append("%d object(s) shared between interpreters" % len(shared))
        groups = {}
        for m in lost:
            groups.setdefault(" and ".join(m["missing_in"]), []).append(m["name"])
        for where, attrs in groups.items():
            problems.append("the module in %s lacks %s" % (where, ", ".join(attrs)))
        emit("fail", "%s (%s sub-interpreters)" % ("; ".join(problems), mode), shared=shared,
             missing=lost, mode=mode, objects=len(walks["main"]))
    else:
        emit("pass", "%d objects compared in main + 2 %s sub-interpreters, none shared"
             % (len(walks["main"]), mode), shared=[], mode=mode, objects=len(walks["main"]))


def check_cycles(ctx):
    be = ctx.backend
    mode = ctx.opts.get("mode", "isolated")
    main_first = bool(ctx.opts.get("main_first"))
    count = int(ctx.opts.get("cycles", 20))
    if mode not in be.modes():
        emit("n/a", "no %s sub-interpreters on this Python" % mode)
        return
    if main_first:
        stage("cycles: main import first")
        ctx.load()
    for i in range(1, count + 1):
        stage("cycles: cycle %d/%d create (%s)" % (i, count, mode))
        iid = be.create(mode)
        stage("cycles: cycle %d/%d import" % (i, count))
        rep = ctx.in_sub(iid, walk=True, exercise=True, label="cycles: cycle %d/%d" % (i, count))
        stage("cycles: cycle %d/%d destroy" % (i, count))
        be.destroy(iid)
        if "error" in rep:
            status, detail, who = classify_error(ctx, rep["error"])
            emit(status, "cycle %d/%d: %s" % (i, count, detail), refused_by=who,
                 cycle=i, traceback=rep["error"][2][-4000:])
            return
    stage("cycles: main import after %d cycles" % count)
    mod = ctx.load()
    touch(mod, ctx.name)
    if ctx.exercise:
        stage("cycles: exercise in main after cycles")
        _iso_exercise(mod, *ctx.exercise)
    stage("cycles: done")
    emit("pass", "%d create/import/destroy cycles" % count, cycles=count)


def check_concurrent(ctx):
    """Two own-GIL interpreters run the exercise at the same time."""
    be = ctx.backend
    if not ctx.exercise:
        emit("n/a", "needs --exercise")
        return
    if not be.own_gil:
        emit("n/a", "no own-GIL sub-interpreters on this Python")
        return
    import threading
    repeat = int(ctx.opts.get("repeat", 10))
    iids = []
    for label in ("sub1", "sub2"):
        stage("concurrent: create %s" % label)
        iid = be.create("isolated")
        # 3.12.1 hangs in destroy() when a sub-interpreter first imports
        # threading from a worker thread, so import it from this thread.
        err = be.run(iid, "import threading\n")
        if err is not None:
            emit("fail", "could not prepare %s: %s" % (label, err.strip().splitlines()[-1]))
            return
        iids.append(iid)
    reports = [None, None]

    def work(n):
        reports[n] = ctx.in_sub(iids[n], walk=False, exercise=True, repeat=repeat,
                                label="concurrent: sub%d" % (n + 1))

    stage("concurrent: run in two threads")
    threads = [threading.Thread(target=work, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for n, iid in enumerate(iids, 1):
        stage("concurrent: destroy sub%d" % n)
        be.destroy(iid)
    stage("concurrent: done")
    for rep in reports:
        if rep is None or "error" in rep:
            error = (rep or {}).get("error") or ["NoReport", "worker reported nothing", ""]
            status, detail, who = classify_error(ctx, error)
            emit(status, "concurrent: " + detail, refused_by=who, traceback=error[2][-4000:])
            return
    emit("pass", "two own-GIL interpreters ran the exercise %d times each, concurrently" % repeat)


def check_discover(ctx):
    """Every extension module importable from this Python's site-packages
    (and, with include_stdlib, its standard library), with the distribution
    that installed it. Nothing is imported but importlib.metadata."""
    import importlib.machinery
    import importlib.metadata
    import sysconfig
    suffixes = sorted(importlib.machinery.EXTENSION_SUFFIXES, key=len, reverse=True)
    paths = sysconfig.get_paths()
    roots = []
    for key in ("platlib", "purelib"):
        if paths.get(key) and paths[key] not in roots:
            roots.append(paths[key])
    site_roots = list(roots)
    if ctx.opts.get("include_stdlib"):
        for key in ("platstdlib", "stdlib"):
            base = paths.get(key)
            for root in (base, base and os.path.join(base, "lib-dynload")):
                if root and root not in roots:
                    roots.append(root)
    owners = {}
    broken = []
    stage("discover: importlib.metadata")
    for dist in importlib.metadata.distributions():
        try:
            name = dist.metadata["Name"]
            version = dist.version
            files = dist.files or []
        except Exception as exc:
            broken.append({"path": str(getattr(dist, "_path", "?")), "reason": "%s: %s" % (type(exc).__name__, exc)})
            continue
        for f in files:
            try:
                owners[os.path.realpath(str(f.locate()))] = (name, version)
            except Exception:
                pass
    found = []
    seen = set()
    for root in roots:
        if not os.path.isdir(root):
            continue
        stdlib = root not in site_roots
        for dirpath, dirnames, filenames in os.walk(root):
            rel = os.path.relpath(dirpath, root)
            parts = [] if rel == "." else rel.split(os.sep)
            if stdlib and parts and parts[0] == "site-packages":
                dirnames[:] = []
                continue
            if parts and parts[0] == "lib-dynload":
                parts = parts[1:]
            if not all(p.isidentifier() for p in parts):
                dirnames[:] = []
                continue
            dirnames.sort()
            for filename in sorted(filenames):
                suffix = next((x for x in suffixes if filename.endswith(x)), None)
                if suffix is None:
                    continue
                stem = filename[:-len(suffix)]
                if not stem.isidentifier():
                    continue
                name = ".".join(parts + [stem])
                if name in seen:
                    continue
                seen.add(name)
                path = os.path.join(dirpath, filename)
                owner = owners.get(os.path.realpath(path))
                found.append({"name": name, "path": path, "stdlib": stdlib,
                              "package": owner[0] if owner else None,
                              "version": owner[1] if owner else None})
    emit("pass", "%d extension module(s)" % len(found), modules=found, broken=broken,
         roots=roots)


def gil_enabled():
    check = getattr(sys, "_is_gil_enabled", None)
    return True if check is None else check()


def check_gil_reenabled(ctx):
    """On a free-threaded Python: does importing the module turn the GIL back on?"""
    import warnings
    if gil_enabled():
        emit("n/a", "the GIL is already enabled in this Python (PYTHON_GIL or -X gil)")
        return
    stage("gil-reenabled: import")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mod = ctx.load()
    kind = module_kind(mod)
    notes = [str(w.message) for w in caught
             if issubclass(w.category, RuntimeWarning) and "GIL" in str(w.message)]
    on = gil_enabled()
    declared = kind.get("gil")
    stage("gil-reenabled: done")
    said = (": " + notes[0]) if notes else ""
    if not on:
        how = ("Py_mod_gil: %s" % declared if declared else
               "single-phase init, so PyUnstable_Module_SetGIL" if kind.get("init") == "single-phase"
               else "no Py_mod_gil slot")
        emit("pass", "the GIL stays disabled after the import (%s)" % how, module=kind)
    elif declared == "not-used":
        mine = [n for n in notes if ctx.name in n]
        if notes and not mine:
            emit("inconclusive", "the module declares Py_MOD_GIL_NOT_USED, but a dependency "
                 "turned the GIL on%s" % said, module=kind, warnings=notes)
        else:
            emit("fail", "the module declares Py_MOD_GIL_NOT_USED, yet the GIL was enabled "
                 "by its import%s" % said, module=kind, warnings=notes)
    else:
        why = ("single-phase init" if kind.get("init") == "single-phase"
               else "Py_mod_gil: %s" % (declared or "no slot"))
        emit("refused", "%s: CPython turned the GIL back on%s" % (why, said), module=kind,
             warnings=notes)


def check_threads(ctx):
    """With the GIL off (PYTHON_GIL=0), the exercise in 8 threads at once.
    A `RESULT` the exercise leaves in its namespace must equal the one a
    single-threaded run left."""
    import threading
    if not ctx.exercise:
        emit("n/a", "needs --exercise")
        return
    if gil_enabled():
        emit("n/a", "the GIL is enabled: threads needs a free-threaded Python")
        return
    threads = int(ctx.opts.get("threads", 8))
    rounds = int(ctx.opts.get("rounds", 4))
    iterations = int(ctx.opts.get("iterations", 50))
    src, path = ctx.exercise
    code = compile(src, path, "exec")
    stage("threads: import")
    mod = ctx.load()

    def once():
        ns = {"__name__": "__isolint_exercise__", "MODULE": mod, "__builtins__": __builtins__}
        exec(code, ns)
        return repr(ns["RESULT"]) if "RESULT" in ns else None

    stage("threads: single-threaded reference run")
    try:
        expected = once()
    except Exception as exc:
        # Not a race: the exercise does not run on this module even in one thread, and the
        # other checks that run it say so. Eight threads of the same error would prove nothing.
        emit("inconclusive", "the exercise fails in one thread too: %s: %s"
             % (type(exc).__name__, exc))
        return
    problems = []
    lock = threading.Lock()
    for r in range(1, rounds + 1):
        barrier = threading.Barrier(threads)

        def work(n, r=r, barrier=barrier):
            try:
                barrier.wait()
                for i in range(iterations):
                    got = once()
                    if got != expected:
                        with lock:
                            problems.append(("wrong result", "round %d, thread %d, run %d: RESULT "
                                             "was %s, single-threaded %s" % (r, n, i + 1,
                                                                             got, expected), ""))
                        return
            except BaseException as exc:
                with lock:
                    problems.append(("exception", "round %d, thread %d: %s: %s"
                                     % (r, n, type(exc).__name__, exc),
                                     "".join(traceback.format_exception(exc))[-4000:]))

        stage("threads: round %d/%d, %d threads x %d runs" % (r, rounds, threads, iterations))
        pool = [threading.Thread(target=work, args=(n,)) for n in range(1, threads + 1)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        if problems:
            break
    stage("threads: done")
    if problems:
        kind, detail, text = problems[0]
        more = "" if len(problems) == 1 else " (%d problems in all)" % len(problems)
        emit("fail", "%s: %s%s" % (kind, detail, more), traceback=text or None)
    else:
        emit("pass", "%d rounds of %d threads x %d runs with the GIL off" % (rounds, threads,
                                                                              iterations))


def embed_cycle(cycle, total, mode):
    """One cycle of the embed host: import, walk, exercise, and look for
    objects of an earlier cycle. Called by the host in a fresh runtime
    (finalize) or a fresh Py_NewInterpreter (subinterp); reports one
    "##isolint-cycle <json>" line on stdout.

    An object of an earlier cycle is found through the garbage collector:
    every container the GC tracks is in one of the current interpreter's
    generation lists (gc.get_objects()). One reachable from the module that
    says it is tracked but is in none of them was tracked by a runtime or
    interpreter that is gone. Untracked objects (str, int, bytes, static
    types) cannot be judged this way."""
    target = os.environ["ISOLINT_TARGET"]
    opts = json.loads(os.environ.get("ISOLINT_OPTS", "{}"))
    name = opts.get("name") or target
    label = "embed %s: cycle %d/%d" % (mode, cycle, total)
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    out = {"cycle": cycle}
    # The extension modules the first cycle's import pulled in are imported first in
    # later cycles, each behind its own stage marker: a crash there is the
    # dependency's (3.12's own _datetime does not survive Py_FinalizeEx), not the module's.
    state = os.path.join(os.path.dirname(os.environ["ISOLINT_PROBE"]),
                         "embed-deps-%d.json" % os.getpid())
    try:
        if cycle > 1 and os.path.exists(state):
            with open(state, encoding="utf-8") as f:
                deps = json.load(f)
            for dep in deps:
                stage(label + " import dependency " + dep)
                try:
                    __import__(dep)
                except Exception:
                    pass
        before = set(sys.modules)
        stage(label + " import")
        mod = _iso_load(target, name)
        if cycle == 1:
            import importlib.machinery
            suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
            deps = [n for n in sys.modules if n not in before and n != name
                    and str(getattr(sys.modules[n], "__file__", "") or "").endswith(suffixes)]
            with open(state, "w", encoding="utf-8") as f:
                json.dump(deps, f)
        objects = {}
        stage(label + " walk")
        walk = _iso_walk(mod, name, objects=objects)
        out["objects"] = len(walk)
        out["names"] = _iso_names(mod)
        exercise = opts.get("exercise")
        if exercise:
            stage(label + " exercise")
            with open(exercise, encoding="utf-8") as f:
                _iso_exercise(mod, f.read(), exercise)
        stage(label + " gc check")
        live = {id(o) for o in gc.get_objects()}
        stale = []
        stale_paths = set()
        for path, obj in objects.items():
            if gc.is_tracked(obj) and id(obj) not in live:
                stale_paths.add(path)
                # Listed once, at the outermost stale object of a chain.
                if walk[path][2] not in stale_paths:
                    stale.append({"name": path, "type": type(obj).__qualname__})
        out["stale"] = stale
        del objects, live
    except BaseException as exc:
        out["error"] = [type(exc).__name__, str(exc),
                        "".join(traceback.format_exception(exc))[-4000:]]
    stage(label + " done")
    os.write(1, ("##isolint-cycle " + json.dumps(out, sort_keys=True) + "\n").encode())


CHECKS = {
    "info": check_info,
    "main-import": check_main_import,
    "two-instances": check_two_instances,
    "isolated-import": check_isolated_import,
    "shared-objects": check_shared_objects,
    "cycles": check_cycles,
    "concurrent": check_concurrent,
    "discover": check_discover,
    "gil-reenabled": check_gil_reenabled,
    "threads": check_threads,
}


def main(argv):
    if len(argv) < 2 or argv[1] not in CHECKS:
        sys.stderr.write("usage: probe.py CHECK [TARGET [OPTIONS_JSON]]\n")
        return 2
    # Import like `python -c` does: from the working directory, not from the
    # temporary directory that holds this script.
    sys.path[0] = os.getcwd()
    target = argv[2] if len(argv) > 2 else ""
    opts = json.loads(argv[3]) if len(argv) > 3 else {}
    ctx = Ctx(target, opts)
    try:
        CHECKS[argv[1]](ctx)
    except BaseException as exc:
        emit("fail", "%s: %s" % (type(exc).__name__, exc),
             traceback="".join(traceback.format_exception(exc))[-4000:])
    stage("exit")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
