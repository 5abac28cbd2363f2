#!/usr/bin/env python3
"""Writes docs/config-reference.md from the comments and defaults of the config schema
(proto/*.proto) and of the built-in plugins' options (plugins/**/*.proto).

    python3 tools/docs/gen_config_reference.py            # rewrite the file
    python3 tools/docs/gen_config_reference.py --check    # exit 1 if it is out of date

The .proto files are the single source of truth: every field is commented there with its
default, and this page only re-arranges them as tables (one per message)."""
import argparse
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIELD = re.compile(r"^(optional|repeated|required)?\s*([\w.]+)\s+(\w+)\s*=\s*\d+\s*(\[(.*)\])?\s*;")
# The default among a field's options ("[default = 4]", "[(presence_matters) = true]", both).
DEFAULT = re.compile(r"(?:^|,)\s*default\s*=\s*(\"(?:[^\"\\]|\\.)*\"|[^,]+?)\s*(?:,|$)")


def parse(path):
    """Yields (message, leading comment, [(label, type, name, default, comment)])."""
    messages, stack, comment = [], [], []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line.startswith("//"):
            comment.append(line[2:].strip())
            continue
        match = re.match(r"^(message|enum)\s+(\w+)\s*\{", line)
        if match:
            kind, name = match.groups()
            full = ".".join([m[0] for m in stack if m[1] == "message"] + [name])
            stack.append((name, kind))
            if kind == "message":
                messages.append({"name": full, "doc": " ".join(comment), "fields": []})
            comment = []
            continue
        if line.startswith("}"):
            if stack:
                stack.pop()
            comment = []
            continue
        match = FIELD.match(line)
        if match and stack and stack[-1][1] == "message":
            label, ftype, name, _, options = match.groups()
            found = DEFAULT.search(options or "")
            default = found.group(1) if found else ""
            trailing = raw.split("//", 1)[1].strip() if "//" in raw else ""
            doc = " ".join(comment + ([trailing] if trailing else []))
            owner = ".".join(m[0] for m in stack if m[1] == "message")
            for message in messages:
                if message["name"] == owner:
                    message["fields"].append((label or "", ftype, name, default or "", doc))
        comment = []
    return messages


def config_protos():
    """The schema first, then each plugin's options; not the TensorBoard event format, which is a
    file format and no config."""
    plugins = [p for p in sorted((ROOT / "plugins").rglob("*.proto")) if p.parent.name != "tensorboard"]
    return sorted((ROOT / "proto").glob("*.proto")) + plugins


def render():
    out = ["# Config reference", "",
           "Generated from `proto/*.proto` (the run's schema) and `plugins/**/*.proto` (the built-in plugins'",
           "options) by `tools/docs/gen_config_reference.py`; do not edit by hand.",
           "Configs are protobuf text files (`sdtrain.TrainConfig`); plugin options go in a plugin's",
           "`options { [type.googleapis.com/<package>.<Message>] { ... } }`. Relative paths are relative",
           "to the config file's folder. Any scalar can be overridden with `--set path.to.field=value`.", ""]
    for path in config_protos():
        package = re.search(r"^package\s+([\w.]+);", path.read_text(), re.M).group(1)
        out += [f"## {path.relative_to(ROOT)}", ""]
        for message in parse(path):
            out += [f"### {package}.{message['name']}", ""]
            if message["doc"]:
                out += [message["doc"], ""]
            if not message["fields"]:
                continue
            out += ["| field | type | default | meaning |", "| --- | --- | --- | --- |"]
            for label, ftype, name, default, doc in message["fields"]:
                shown_type = f"repeated {ftype}" if label == "repeated" else ftype
                out.append(f"| `{name}` | {shown_type} | {default.replace('|', '/') or '—'} | {doc.replace('|', '/')} |")
            out.append("")
    return "\n".join(out)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    target = ROOT / "docs" / "config-reference.md"
    text = render()
    if args.check:
        if not target.exists() or target.read_text() != text:
            print(f"{target} is out of date: run tools/docs/gen_config_reference.py", file=sys.stderr)
            return 1
        return 0
    target.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
