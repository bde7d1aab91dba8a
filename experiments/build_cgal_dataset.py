"""Build a real-shape dataset from the meshes of the Debian package libcgal-demo.

  apt-get download libcgal-demo          # libcgal-demo_<version>_all.deb, no root needed
  python -m experiments.build_cgal_dataset --deb libcgal-demo_*.deb --output data/cgal

or, with an already extracted ``data/meshes`` folder, ``--meshes DIR``. The .deb is an
``ar`` archive; its ``data.tar.*`` holds ``usr/share/doc/libcgal-dev/data.tar.gz``, whose
``data/meshes/`` (armadillo, bunny, elephant, camel, man, bull, ... 143 files, many of them
open patches or degenerate test cases) is extracted into ``--work`` and converted with
`implicit_fields.data.prepare` (category id ``cgal``). Broken meshes are reported and
skipped. Nothing is downloaded by this script.
"""

import io
import lzma
import os
import tarfile
import zlib

from experiments import cli, prepare_data

_INNER = "usr/share/doc/libcgal-dev/data.tar.gz"


def read_ar_members(path):
    """The members of an ``ar`` archive (a .deb) as {name: bytes}."""
    members = {}
    with open(path, "rb") as f:
        if f.read(8) != b"!<arch>\n":
            raise ValueError(f"{path}: not an ar archive (.deb)")
        while True:
            header = f.read(60)
            if len(header) < 60:
                break
            try:
                name = header[:16].decode("ascii").strip().rstrip("/")
                size = int(header[48:58].decode("ascii").strip())
            except ValueError:
                raise ValueError(f"{path}: corrupt ar archive (bad member header {header[:16]!r})") from None
            members[name] = f.read(size)
            if len(members[name]) < size:
                raise ValueError(f"{path}: truncated ar archive (member {name!r})")
            if size % 2:
                f.read(1)
    return members


def _open_data_tar(blob, name):
    if name.endswith(".xz"):
        blob = lzma.decompress(blob)
        return tarfile.open(fileobj=io.BytesIO(blob), mode="r:")
    if name.endswith(".zst"):
        import zstandard  # only for .deb files compressed with zstd

        blob = zstandard.ZstdDecompressor().decompressobj().decompress(blob)
        return tarfile.open(fileobj=io.BytesIO(blob), mode="r:")
    return tarfile.open(fileobj=io.BytesIO(blob), mode="r:*")


def extract_meshes(deb_path, work_dir):
    """Extract ``data/meshes`` of libcgal-demo's inner data.tar.gz into ``work_dir``.

    Returns:
        str, the meshes folder (``work_dir/data/meshes``).
    """
    members = read_ar_members(deb_path)
    data_name = next((n for n in members if n.startswith("data.tar")), None)
    if data_name is None:
        raise ValueError(f"{deb_path}: no data.tar.* member (found {sorted(members)})")
    try:
        with _open_data_tar(members[data_name], data_name) as outer:
            inner = None
            for m in outer.getmembers():
                if m.name.lstrip("./") == _INNER:
                    inner = outer.extractfile(m).read()
            if inner is None:
                raise ValueError(f"{deb_path}: {_INNER} not found; is this libcgal-demo?")
        with tarfile.open(fileobj=io.BytesIO(inner), mode="r:gz") as tar:
            wanted = [
                m for m in tar.getmembers() if m.isfile() and m.name.lstrip("./").startswith("data/meshes/")
            ]
            tar.extractall(work_dir, members=wanted, filter="data")
    except (tarfile.TarError, lzma.LZMAError, zlib.error, EOFError) as e:
        raise ValueError(f"{deb_path}: corrupt archive ({type(e).__name__}: {e})") from e
    return os.path.join(work_dir, "data", "meshes")


def _main(argv):
    parser = cli.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--deb", help="libcgal-demo_*.deb (from `apt-get download libcgal-demo`)")
    source.add_argument("--meshes", help="an extracted data/meshes folder")
    parser.add_argument("--output", default="data/cgal", help="dataset root")
    parser.add_argument("--work", default=None, help="extraction folder (default: OUTPUT/../cgal_src)")
    prepare_data.add_arguments(parser)
    args = parser.parse_args(argv)
    meshes = args.meshes
    if args.deb:
        if not os.path.isfile(args.deb):
            raise ValueError(f"--deb: {args.deb}: no such file")
        work = args.work or os.path.join(os.path.dirname(os.path.abspath(args.output)), "cgal_src")
        meshes = extract_meshes(args.deb, work)
        print(f"extracted {len(os.listdir(meshes))} files into {meshes}")
    input_flag = "--meshes" if args.meshes else f"--deb (extracted to {meshes})"
    return prepare_data.run(args, meshes, args.output, "cgal", "cgal_real", input_flag=input_flag)


def main(argv=None):
    """The command line; a bad flag or file is one line on stderr and exit code 2."""
    return cli.run(_main, argv)


if __name__ == "__main__":
    main()
