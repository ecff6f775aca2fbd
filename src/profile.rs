//! The chip facts: what the device layer reads from a device, the emulator reports about itself and
//! the tiling plans against. It imports nothing of the crate, so every layer can import it downward.

/// Bytes of the Unified Buffer a kernel cannot use: 256 B reserved for fused operators plus 8 KiB
/// reserved by the Ascend C framework unless built with `--cce-disable-asc-reserved-ubuf` (asc-devkit
/// docs/zh/guide/编程指南/高级编程/硬件实现/架构规格/NPU架构版本2201.md: "UB总容量为192KB").
pub const UB_RESERVED_BYTES: u32 = 256 + 8 * 1024;

/// What the tiling needs to know about the chip, read from the device (`Device::profile`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceProfile {
    /// The SoC name (`aclrtGetSocName`), e.g. "Ascend910B2".
    pub soc_name: String,
    /// AI (cube) cores: `aclrtGetDeviceInfo(ACL_DEV_ATTR_AICORE_CORE_NUM)`.
    pub ai_cores: u32,
    /// Vector cores (AIV) available to one launch: `ACL_DEV_ATTR_VECTOR_CORE_NUM`, else
    /// `aclGetDeviceCapability(ACL_DEVICE_INFO_VECTOR_CORE_NUM)`.
    pub vector_cores: u32,
    /// Unified Buffer bytes a kernel may use on one core: what the device reports as
    /// `ACL_DEV_ATTR_UBUF_PER_VECTOR_CORE` less [`UB_RESERVED_BYTES`] (see
    /// [`DeviceProfile::usable_ub_bytes`]). This is the one meaning of `ub_bytes` in the crate: the
    /// budget the tiling validates against and the capacity the emulator enforces.
    pub ub_bytes: u32,
}

impl DeviceProfile {
    /// Ascend 910B2 (dav-c220, `__NPU_ARCH__` 2201): 24 AI cores and 48 vector cores (the `[SoCInfo]` of
    /// the CANN platform config quoted in Ascend/torchair `docs/context/limit_core_num.md`; asc-devkit's
    /// NPU架构版本2201.md gives AIC : AIV = 1 : 2), 192 KiB of UB per core less [`UB_RESERVED_BYTES`].
    /// Used when no device is at hand (and by the emulator by default); a device's own numbers
    /// replace it.
    pub fn ascend_910b() -> Self {
        DeviceProfile {
            soc_name: "Ascend910B2".into(),
            ai_cores: 24,
            vector_cores: 48,
            ub_bytes: Self::usable_ub_bytes(192 * 1024),
        }
    }

    /// The kernel's share of a core's Unified Buffer of `reported` bytes (what
    /// `ACL_DEV_ATTR_UBUF_PER_VECTOR_CORE` says): `reported - UB_RESERVED_BYTES`, 0 if smaller.
    pub fn usable_ub_bytes(reported: u32) -> u32 {
        reported.saturating_sub(UB_RESERVED_BYTES)
    }

    /// What a device with this profile reports as `ACL_DEV_ATTR_UBUF_PER_VECTOR_CORE`: the kernel's
    /// share plus [`UB_RESERVED_BYTES`] (the inverse of [`DeviceProfile::usable_ub_bytes`]).
    pub fn reported_ub_bytes(&self) -> u32 {
        self.ub_bytes.saturating_add(UB_RESERVED_BYTES)
    }
}

impl Default for DeviceProfile {
    fn default() -> Self {
        Self::ascend_910b()
    }
}
