/// How the remove path frees a group_device: the designs of the series, side by side, chosen at run time.
///
/// See DESIGN.md, "Variants". Each one changes only ``IOMMUSystem/freeGroupDevice(_:in:)`` and where it
/// is called from.
public enum RemoveVariant: String, CaseIterable, Sendable {
    /// Before the seed patch: the whole free, `cancelSync` of `broken_work` included, runs under
    /// `group->mutex`. The work takes that mutex: hazard 2, a possible deadlock.
    case freeUnderMutex
    /// The seed (v3 06/11) plus v3 07/11: the free runs after `mutex_unlock`, cancels the work with
    /// `cancelSync`, then frees through RCU. A reader that found the device before the unlink can queue
    /// the work after the cancel returned: hazard 3, a use after free.
    case deferredCancel
    /// v4 as posted: after `mutex_unlock`, `synchronize` then `disableSync`, then the free. Clean, but
    /// every removal waits for a whole grace period.
    case deferredDisable
    /// Our proposal: after `mutex_unlock`, `disableSync` (no future queueing, nothing running), then an
    /// RCU-deferred free. A late reader's attempt to queue fails; its read section is covered by the
    /// deferred free.
    case deferredDisableRCU

    /// Whether ``IOMMUSystem/freeGroupDevice(_:in:)`` runs with `group->mutex` held.
    public var freesUnderMutex: Bool { self == .freeUnderMutex }
}
