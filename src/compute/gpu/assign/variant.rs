//! The assign kernels' shapes and the choice of one per adapter.

use crate::{Error, Result};

/// Environment variable forcing one assign kernel (`subgroup`, `tiled64`,
/// `tiled128`); unknown names, or kernels the adapter lacks, are errors.
pub const ASSIGN_KERNEL_ENV: &str = "RVC_INDEX_ASSIGN_KERNEL";

/// Which assign kernel runs. All give the same results (ties to the lowest
/// centroid index, f32 keys); they differ in how the work is tiled:
///
/// * `Subgroup`: 4 rows per invocation, centroids shared by subgroup
///   broadcasts; the fast one on CPU adapters (lavapipe), where every
///   workgroup-memory load is a gather.
/// * `Tiled64`: 64 × 64 tiles, 4 × 4 register blocks, 16-float slices in
///   workgroup memory (single buffered); for integrated GPUs and adapters
///   with few registers.
/// * `Tiled128`: 128 × 128 tiles, 8 × 8 register blocks, 8-float slices
///   double buffered in 16 KiB of workgroup memory; for discrete GPUs.
/// * `Coop16`: cooperative matrices (tensor cores), 16 × 16 × 16 f16
///   products with f32 accumulation for the candidates, the best four per
///   row re-scored in f32, rows too close to call re-run with an f32
///   kernel. Only when asked for (`RVC_INDEX_ASSIGN_KERNEL=coop16`), as it
///   needs wgpu's experimental cooperative-matrix feature.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AssignVariant {
    Subgroup,
    Tiled64,
    Tiled128,
    Coop16,
}

impl AssignVariant {
    pub const ALL: [AssignVariant; 4] = [
        AssignVariant::Subgroup,
        AssignVariant::Tiled64,
        AssignVariant::Tiled128,
        AssignVariant::Coop16,
    ];

    /// The name `RVC_INDEX_ASSIGN_KERNEL` and reports use.
    pub fn name(self) -> &'static str {
        match self {
            AssignVariant::Subgroup => "subgroup",
            AssignVariant::Tiled64 => "tiled64",
            AssignVariant::Tiled128 => "tiled128",
            AssignVariant::Coop16 => "coop16",
        }
    }

    pub fn parse(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|v| v.name() == s.trim().to_ascii_lowercase())
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "{ASSIGN_KERNEL_ENV}={s:?}: unknown assign kernel (choose from {})",
                    Self::ALL.map(|v| v.name()).join(", ")
                ))
            })
    }

    pub(super) fn entry_point(self) -> &'static str {
        match self {
            AssignVariant::Subgroup => "assign_subgroup",
            AssignVariant::Tiled64 => "assign_tiled",
            AssignVariant::Tiled128 => "assign_tiled128",
            AssignVariant::Coop16 => "assign_coop",
        }
    }

    /// Rows one workgroup covers; chunks are padded to a multiple.
    pub(super) fn rows_per_workgroup(self) -> usize {
        match self {
            AssignVariant::Subgroup => 64 * 4,
            AssignVariant::Tiled64 | AssignVariant::Coop16 => 64,
            AssignVariant::Tiled128 => 128,
        }
    }

    /// Centroids per inner block; the centroid range is padded to a multiple.
    pub(super) fn centroid_block(self) -> usize {
        match self {
            AssignVariant::Subgroup => 16,
            AssignVariant::Tiled64 | AssignVariant::Coop16 => 64,
            AssignVariant::Tiled128 => 128,
        }
    }

    /// Rows are padded to a multiple of this many vec4s.
    pub(super) fn vec4_align(self) -> usize {
        match self {
            AssignVariant::Subgroup => 1,
            AssignVariant::Tiled64 => 4,
            AssignVariant::Tiled128 => 2,
            AssignVariant::Coop16 => 8,
        }
    }

    /// Loop iterations per invocation for one centroid block.
    pub(super) fn iterations_per_block(self, dp4: usize) -> usize {
        match self {
            AssignVariant::Subgroup => dp4 + 1,
            // Four k-steps inside each 16-float slice, counted as a loop.
            AssignVariant::Tiled64 => dp4 / 4 * 5 + 1,
            // Slice steps are written out: one trip per 8-float slice.
            AssignVariant::Tiled128 => dp4 / 2 + 1,
            // 16 staging trips per 32-float slice, 64 key updates per block.
            AssignVariant::Coop16 => dp4 / 8 * 17 + 64,
        }
    }

    /// Workgroups a dispatch should have at least, where rows allow, so
    /// that a discrete GPU's every compute unit gets several.
    pub(super) fn min_workgroups(self) -> usize {
        match self {
            AssignVariant::Subgroup => 1,
            _ => 512,
        }
    }

    /// Whether an adapter with these limits can run the kernel at all.
    pub(super) fn fits(self, limits: &wgpu::Limits) -> bool {
        let (invocations, storage) = match self {
            AssignVariant::Subgroup => (64, 0),
            AssignVariant::Tiled64 => (256, 2 * 256 * 16 + 2 * 1024 * 4),
            AssignVariant::Tiled128 => (256, 1024 * 16),
            AssignVariant::Coop16 => (32, 24 * 1024),
        };
        limits.max_compute_invocations_per_workgroup >= invocations
            && limits.max_compute_workgroup_size_x >= 64
            && limits.max_compute_workgroup_size_y >= 16
            && limits.max_compute_workgroup_storage_size >= storage
    }
}

/// PCI vendor ids of the discrete-GPU makers whose register files hold an
/// 8 × 8 block per invocation at full occupancy or near it.
const NVIDIA: u32 = 0x10de;
const AMD: u32 = 0x1002;

/// The kernel for an adapter, among those compiled (`available`): subgroups
/// on CPU adapters, the large tiles on discrete NVIDIA and AMD GPUs (and any
/// other discrete GPU), the 64 × 64 tiles elsewhere (integrated GPUs, whose
/// register files are smaller, and unknown kinds). Never `Coop16`, which is
/// opt-in.
pub(crate) fn choose(info: &wgpu::AdapterInfo, available: &[AssignVariant]) -> AssignVariant {
    let has = |v| available.contains(&v);
    let pick = match info.device_type {
        wgpu::DeviceType::Cpu => AssignVariant::Subgroup,
        wgpu::DeviceType::DiscreteGpu => AssignVariant::Tiled128,
        _ if info.vendor == NVIDIA || info.vendor == AMD => AssignVariant::Tiled128,
        _ => AssignVariant::Tiled64,
    };
    if has(pick) {
        pick
    } else {
        AssignVariant::Tiled64
    }
}

/// `RVC_INDEX_ASSIGN_KERNEL`, if set: the kernel it names, which must be
/// among `available`.
pub(crate) fn from_env(available: &[AssignVariant]) -> Result<Option<AssignVariant>> {
    let Ok(s) = std::env::var(ASSIGN_KERNEL_ENV) else {
        return Ok(None);
    };
    if s.trim().is_empty() {
        return Ok(None);
    }
    let v = AssignVariant::parse(&s)?;
    if !available.contains(&v) {
        return Err(Error::Unsupported(format!(
            "{ASSIGN_KERNEL_ENV}={s}: this adapter has no {} kernel (it has {})",
            v.name(),
            available
                .iter()
                .map(|v| v.name())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    Ok(Some(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(device_type: wgpu::DeviceType, vendor: u32) -> wgpu::AdapterInfo {
        wgpu::AdapterInfo {
            vendor,
            ..wgpu::AdapterInfo::new(device_type, wgpu::Backend::Vulkan)
        }
    }

    #[test]
    fn names_round_trip() {
        for v in AssignVariant::ALL {
            assert_eq!(AssignVariant::parse(v.name()).unwrap(), v);
        }
        assert!(AssignVariant::parse("tiled").is_err());
    }

    #[test]
    fn choice_per_adapter_kind() {
        let all = AssignVariant::ALL;
        let tiled = [AssignVariant::Tiled64, AssignVariant::Tiled128];
        use wgpu::DeviceType as T;
        assert_eq!(choose(&info(T::Cpu, 0), &all), AssignVariant::Subgroup);
        // No subgroups on that CPU adapter: the portable tiles.
        assert_eq!(choose(&info(T::Cpu, 0), &tiled), AssignVariant::Tiled64);
        assert_eq!(
            choose(&info(T::DiscreteGpu, NVIDIA), &all),
            AssignVariant::Tiled128
        );
        assert_eq!(
            choose(&info(T::IntegratedGpu, AMD), &all),
            AssignVariant::Tiled128
        );
        assert_eq!(
            choose(&info(T::IntegratedGpu, 0x8086), &all),
            AssignVariant::Tiled64
        );
        // An adapter whose limits refused the large tiles.
        assert_eq!(
            choose(&info(T::DiscreteGpu, NVIDIA), &[AssignVariant::Tiled64]),
            AssignVariant::Tiled64
        );
    }

    #[test]
    fn webgpu_default_limits_fit_every_f32_kernel() {
        let l = wgpu::Limits::default();
        for v in AssignVariant::ALL {
            assert_eq!(v.fits(&l), v != AssignVariant::Coop16, "{v:?}");
        }
    }
}
