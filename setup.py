"""Package discovery for the one `ruledsl.*` import namespace (metadata lives in pyproject.toml).

The design keeps top-level folders (`compiler/`, `runtime/`, ...) that install under `ruledsl.`;
every package below each root is found automatically, so a new subpackage needs no edit here.
"""

from setuptools import find_packages, setup

ROOTS = {
    "ruledsl": "ruledsl",
    "ruledsl.compiler": "compiler",
    "ruledsl.runtime": "runtime",
    "ruledsl.grammars": "grammars",
    "ruledsl.models": "models",
    "ruledsl.examples": "examples",
}

packages, package_dir = [], {}
for name, folder in ROOTS.items():
    found = [f"{name}.{sub}" for sub in find_packages(folder)]
    packages += [name, *found]
    package_dir[name] = folder
    package_dir.update({sub: f"{folder}/{sub[len(name) + 1 :].replace('.', '/')}" for sub in found})

setup(packages=packages, package_dir=package_dir)
