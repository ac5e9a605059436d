/// A translation domain a device can be attached to. Only its identity and kind matter to the model.
///
/// Kernel analogue: `struct iommu_domain`.
public final class IOMMUDomain: Sendable, CustomStringConvertible {
    /// Kernel analogue: `IOMMU_DOMAIN_DMA`, `IOMMU_DOMAIN_BLOCKED`.
    public enum Kind: String, Sendable {
        /// The group's default domain: DMA through translations the DMA API manages.
        case dma
        /// Translates nothing: every DMA is blocked. Used for DMA ownership and for quarantine.
        case blocked
    }

    public let kind: Kind
    /// The group it was allocated for, for messages.
    public let groupID: Int

    init(kind: Kind, groupID: Int) {
        self.kind = kind
        self.groupID = groupID
    }

    public var description: String { "\(kind)-domain(group \(groupID))" }
}
