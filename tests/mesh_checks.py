"""Mesh properties shared by the meshing, MISE and marching-cubes tests."""

import numpy as np


def directed_edges(faces):
    """The three directed edges (a, b) of every face, [3F, 2]."""
    return np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])


def edges_shared_twice(faces) -> bool:
    """Closed (2-manifold edges): every undirected edge lies in exactly two faces."""
    _, counts = np.unique(np.sort(directed_edges(faces), axis=1), axis=0, return_counts=True)
    return bool(np.all(counts == 2))


def assert_closed_and_oriented(faces):
    """Every undirected edge in exactly two faces, traversed once each way."""
    directed = directed_edges(faces)
    _, counts = np.unique(np.sort(directed, axis=1), axis=0, return_counts=True)
    assert np.all(counts == 2), np.bincount(counts)
    _, counts = np.unique(directed, axis=0, return_counts=True)
    assert np.all(counts == 1)  # consistent orientation: (a, b) and (b, a), never twice (a, b)


def volume_area(v, f):
    """Signed volume (positive for outward faces) and surface area of a triangle mesh."""
    v = np.asarray(v, np.float64)
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    volume = float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)
    area = float(0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1).sum())
    return volume, area
