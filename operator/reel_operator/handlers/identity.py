"""The recorder's identity and pod, created with independent calls at once (``Context.io``): the session's own
ServiceAccount, Role and RoleBinding (rbac.py) or an account made ahead (accounts.py), and the pod; each adopted
only when it is this session's. Used by create.py (a start, a replacement pod)."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import kopf

from .. import accounts, podspec, rbac
from ..names import owned_by
from .common import Context


def rebind(ctx: Context, session, meta: Mapping[str, Any], pod: Mapping[str, Any],
            bound: Mapping[str, Any]) -> None:
    """The pod existed already (an earlier attempt created it) and runs as another account than the RoleBinding
    just made names: one made ahead, before that attempt failed (accounts.py). The binding is made again for the
    pod's account (its subjects are what the Role is granted to), and that account claimed."""
    used = podspec.pod_account(pod)
    if not owned_by(pod, meta) or rbac.bound_account(bound) == used:
        return
    ctx.kube.delete("RoleBinding", meta["namespace"], bound["metadata"]["name"], uid=bound["metadata"].get("uid"))
    check_bound(meta, pod, used, at_once(ctx, bind_calls(ctx, session, used)))


def bind_calls(ctx: Context, session, account: str) -> list:
    """The calls that give ``account`` (the pod's) the session's Role, to make at once: the RoleBinding naming it
    and, for an account made ahead, its claim (accounts.claim). Their results go to ``check_bound``."""
    calls = [functools.partial(ctx.kube.create, rbac.build_role_binding(session, account))]
    if accounts.pooled(account):
        calls.append(functools.partial(ctx.kube.patch_service_account, session.metadata.namespace, account,
                                       accounts.claim(session)))
    return calls


def check_bound(meta: Mapping[str, Any], pod: Mapping[str, Any], account: str, results: list) -> None:
    """``bind_calls``' results: the RoleBinding is this session's (else kopf.TemporaryError, as ``check_owned``),
    and a claimed account still exists (else kopf.TemporaryError: the pod cannot get its token)."""
    binding = results[0][0]
    check_owned(binding, binding, meta)
    if accounts.pooled(account) and results[1] is None:
        raise kopf.TemporaryError(f"ServiceAccount {account} of pod {pod['metadata']['name']} is gone", delay=3)


def undo(ctx: Context, objects, made, account: str | None) -> None:
    """The room was lost: delete what the first round created. An account a pod was created with is never given
    to another session (that pod's token would act for it until the pod is gone): it is only dropped."""
    pod_created = False
    for obj, (existing, created) in zip(objects, made, strict=True):
        if not created:
            continue
        ns, name, uid = obj["metadata"]["namespace"], obj["metadata"]["name"], existing["metadata"].get("uid")
        if obj["kind"] == "Pod":
            pod_created = True
            ctx.kube.delete_pod(ns, name, grace_seconds=0, uid=uid)
        else:
            ctx.kube.delete(obj["kind"], ns, name, uid=uid)
    if account and not pod_created:
        ctx.accounts.give_back(objects[0]["metadata"]["namespace"], account)


def creates(ctx: Context, objects) -> list:
    return [functools.partial(ctx.kube.create, obj) for obj in objects]


def beside(ctx: Context, call, calls):
    """``call()`` in this thread while ``ctx.io`` runs each of ``calls`` -> (call's result, [their results]);
    every request answered (or raised) when this returns, the call's error first."""
    if ctx.io is None:
        return call(), [c() for c in calls]
    futures = [ctx.io.submit(c) for c in calls]
    try:
        result = call()
    finally:
        done = [(f, f.exception()) for f in futures]  # waits for each
    for _, err in done:
        if err is not None:
            raise err
    return result, [f.result() for f, _ in done]


def create_recorder(ctx: Context, session, meta: Mapping[str, Any], pod_body: dict[str, Any],
                    account: str | None = None) -> tuple[dict[str, Any], bool]:
    """The recorder's ServiceAccount, Role and RoleBinding (rbac.py), then its pod -> (pod, created). Each is
    created, or adopted only when it is this session's (owner uid): those of an earlier session of the same name
    (deleted, its garbage collection under way) are never taken over, their collection would take the new
    recorder's identity with it; kopf.TemporaryError until they are gone (the create handler gives up after
    MAX_ATTEMPTS, StartFailed). ``account``: the one the session claimed (accounts.py; its RoleBinding names it),
    not created here.

    Order: the pod needs its ServiceAccount to be admitted, a RoleBinding its Role (without RBAC ``bind`` the API
    server resolves the Role to check the binding grants nothing more than its creator holds: 404 before it
    exists). With ``ctx.io`` two round trips, not four: ServiceAccount and Role at once, then RoleBinding and pod at
    once (the recorder's first status report, a second or more later, retries should it come first)."""
    own, role, _ = rbac.build_identity(session, ctx.settings.recorder_sa_annotations)
    first = (role,) if account else (own, role)
    for obj, (existing, _) in zip(first, create_all(ctx, first), strict=True):
        check_owned(obj, existing, meta)
    binding = rbac.build_role_binding(session, account)
    (bound, _), (pod, created) = create_all(ctx, (binding, podspec.as_account(pod_body, account)))
    check_owned(binding, bound, meta)
    rebind(ctx, session, meta, pod, bound)
    return pod, created


def create_all(ctx: Context, objects) -> list[tuple[dict[str, Any], bool]]:
    """kube.create of each, at once with ``ctx.io``; every one answered (or raised) when this returns."""
    return at_once(ctx, creates(ctx, objects))


def at_once(ctx: Context, calls) -> list:
    """Each of ``calls``, at once with ``ctx.io``; every one answered (or raised) when this returns."""
    if ctx.io is None:
        return [c() for c in calls]
    return [future.result() for future in [ctx.io.submit(c) for c in calls]]


def check_owned(obj: Mapping[str, Any], existing: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
    if not owned_by(existing, meta):
        raise kopf.TemporaryError(f"{obj['kind']} {obj['metadata']['name']} belongs to an earlier session of the same "
                                  "name; waiting for its garbage collection", delay=3)
