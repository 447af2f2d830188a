"""The layers of the house (docs/architecture.md): every import points down."""
import ast
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("tfrecords_tools", "alae_tf")

# A module may import only modules of a lower rank. The integer part is the layer of
# docs/architecture.md; the fraction orders modules inside a layer.
RANKS = {
    # 0: the record toolkit, which knows nothing of alae_tf
    "tfrecords_tools": 0.0, "tfrecords_tools.format": 0.0, "tfrecords_tools.sources": 0.0,
    "tfrecords_tools.cli": 0.0,
    "tfrecords_tools.writer": 0.1,
    "tfrecords_tools.convert": 0.2, "tfrecords_tools.inspect_records": 0.2,
    # 1: foundations: pixels, precision, layers, losses, schedule, the reader, metrics, .pth files
    "alae_tf": 1.0, "alae_tf.images": 1.0, "alae_tf.precision": 1.0, "alae_tf.layers": 1.0,
    "alae_tf.losses": 1.0, "alae_tf.schedule": 1.0, "alae_tf.data": 1.0, "alae_tf.pth": 1.0,
    "alae_tf.metrics": 1.0, "alae_tf.metrics.fid": 1.0, "alae_tf.metrics.probe": 1.0,
    "alae_tf.metrics.precision_recall": 1.0,
    "alae_tf.metrics.lpips": 1.1, "alae_tf.metrics.domain": 1.1, "alae_tf.metrics.ppl": 1.2,
    # 2: networks (shared blocks in the package, one file per family)
    "alae_tf.networks": 2.0, "alae_tf.networks.mapping": 2.1, "alae_tf.networks.mlp": 2.1,
    "alae_tf.networks.style": 2.1, "alae_tf.networks.stylegan": 2.1, "alae_tf.networks.dcgan": 2.1,
    "alae_tf.networks.vaegan": 2.1, "alae_tf.networks.autoencoders": 2.1, "alae_tf.networks.recurrent": 2.1,
    # 3: models (the base, the style models, one file per model, the name -> model mapping)
    "alae_tf.models.base": 3.0, "alae_tf.models.style": 3.1,
    "alae_tf.models.alae": 3.2, "alae_tf.models.stylegan": 3.2, "alae_tf.models.dcgan": 3.2,
    "alae_tf.models.vaegan": 3.2, "alae_tf.models.autoencoders": 3.2, "alae_tf.models": 3.3,
    # 4: run directories and the training loop
    "alae_tf.runs": 4.0, "alae_tf.training": 4.0, "alae_tf.training.checkpoints": 4.0,
    "alae_tf.training.strategy": 4.0, "alae_tf.training.summaries": 4.0, "alae_tf.training.loop": 4.1,
    # 5: trained models in use: SavedModel export, opening any trained model, directions in W
    "alae_tf.export": 5.0, "alae_tf.inference": 5.1, "alae_tf.directions": 5.2,
    # 6: command-line entry points (port builds on train's flags -> config, serve on directions)
    "alae_tf.train": 6.0, "alae_tf.evaluate": 6.0, "alae_tf.figures": 6.0, "alae_tf.bench": 6.0,
    "alae_tf.port": 6.1,
    # the web page builds on the directions and the figures' crossovers
    "alae_tf.serve": 6.1,
}


def _modules() -> dict[str, str]:
    out = {}
    for pkg in PACKAGES:
        for root, _, files in os.walk(os.path.join(REPO, pkg)):
            for f in files:
                if f.endswith(".py"):
                    rel = os.path.relpath(os.path.join(root, f), REPO)[:-3]
                    name = rel.replace(os.sep, ".").removesuffix(".__init__")
                    out[name] = os.path.join(root, f)
    return out


def _imports(path: str, known) -> set[str]:
    """Our modules that ``path`` imports anywhere in it (function-local imports included)."""
    found = set()
    for node in ast.walk(ast.parse(open(path).read(), path)):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:  # `from pkg import module` names a module
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in known else node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m.split(".")[0] in PACKAGES}


def test_every_module_has_a_place():
    assert sorted(set(_modules()) - set(RANKS)) == [], "place new modules in RANKS and docs/architecture.md"
    assert sorted(set(RANKS) - set(_modules())) == []


def test_imports_point_down():
    modules = _modules()
    wrong = [f"{m} imports {dep}" for m, path in sorted(modules.items())
             for dep in sorted(_imports(path, modules)) if dep != m and RANKS[dep] >= RANKS[m]]
    assert wrong == []


def test_no_module_shadows_the_standard_library():
    names = {m.rsplit(".", 1)[-1] for m in _modules()}
    assert sorted(names & set(sys.stdlib_module_names)) == []


def test_the_check_sees_a_wrong_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from alae_tf.training import loop\n    import alae_tf.models.base\n")
    assert _imports(str(bad), _modules()) == {"alae_tf.training.loop", "alae_tf.models.base"}
