//! Faults return typed errors, never a panic or a hang: running out of
//! memory while building an optimizer, a device destroyed under it, a
//! buffer destroyed by the caller, and a read-back from a device that is
//! gone. Each test makes its own device (the shared one must survive).

mod common;

use wgpu_optim::validate::random_params;
use wgpu_optim::*;

fn own_device() -> Option<device::Gpu> {
    common::gpu()?;
    Some(device::headless().expect("a second device on the adapter"))
}

fn buffers(gpu: &device::Gpu, n: usize) -> (wgpu::Buffer, wgpu::Buffer) {
    (common::storage_buffer(gpu, &random_params(1, n)), common::storage_buffer(gpu, &random_params(2, n)))
}

/// After `device.destroy()`: recording does not panic (nothing waits, so it
/// cannot know), and every call that waits for the GPU — reading state,
/// the GradScaler, the params, saving a checkpoint — returns
/// `OptimError::DeviceLost`; building a new optimizer does not panic.
#[test]
fn a_destroyed_device_gives_device_lost_errors() {
    let Some(gpu) = own_device() else { return };
    let (p, g) = buffers(&gpu, 1000);
    let mut opt = Optimizer::new(&gpu.device, &gpu.queue, AdamW::default().into(), &[ParamSlice::whole(&p, &g)]).unwrap();
    opt.step().unwrap();
    assert_eq!(opt.read_state(0, 0).unwrap().len(), 1000);
    gpu.device.destroy();
    let _ = opt.step();
    assert!(matches!(opt.read_state(0, 0), Err(OptimError::DeviceLost(_))), "read_state: {:?}", opt.read_state(0, 0).err());
    assert!(matches!(opt.read_grad_control(), Err(OptimError::DeviceLost(_))));
    assert!(matches!(device::read_f32(&gpu.device, &gpu.queue, &p, 0, 10), Err(OptimError::DeviceLost(_))));
    let path = std::env::temp_dir().join(format!("wgpu-optim-lost-{}.safetensors", std::process::id()));
    assert!(matches!(opt.save_checkpoint(&path), Err(OptimError::DeviceLost(_))));
    assert!(!path.exists(), "a failed save wrote a file");
    let _ = Optimizer::new(&gpu.device, &gpu.queue, AdamW::default().into(), &[ParamSlice::whole(&p, &g)]);
}

/// A param buffer the caller destroys after the optimizer was built: the
/// step's submission is rejected and returned as `OptimError::Wgpu`, and
/// the optimizer's own state is still readable and unchanged.
#[test]
fn a_buffer_destroyed_by_the_caller_is_a_wgpu_error() {
    let Some(gpu) = own_device() else { return };
    let (p, g) = buffers(&gpu, 1000);
    let mut opt = Optimizer::new(&gpu.device, &gpu.queue, Adam::default().into(), &[ParamSlice::whole(&p, &g)]).unwrap();
    opt.step().unwrap();
    let state = opt.read_state(0, 0).unwrap();
    p.destroy();
    assert!(matches!(opt.step(), Err(OptimError::Wgpu(_))), "step over a destroyed buffer");
    assert!(matches!(device::read_f32(&gpu.device, &gpu.queue, &p, 0, 10), Err(OptimError::Wgpu(_))));
    assert_eq!(opt.read_state(0, 0).unwrap(), state, "the rejected step changed the state");
}

const OOM_CHILD: &str = "WGPU_OPTIM_OOM_CHILD";

/// Virtual memory of this process, from /proc/self/status.
fn vm_size() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmSize:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

/// The child of `out_of_memory_while_building_is_a_typed_error`: with its
/// address space capped just above what it uses, an Adam optimizer whose
/// state needs twice the room left must fail with a typed error.
#[test]
#[ignore = "run as a child process by out_of_memory_while_building_is_a_typed_error"]
fn oom_child() {
    if std::env::var_os(OOM_CHILD).is_none() {
        return;
    }
    let gpu = device::headless().unwrap();
    let n = 64usize << 20; // 256 MiB per buffer
    let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST;
    let mk = || gpu.device.create_buffer(&wgpu::BufferDescriptor { label: None, size: 4 * n as u64, usage, mapped_at_creation: false });
    let (p, g) = (mk(), mk());
    // Compile the pipeline first, into a shared cache, so the capped build
    // allocates buffers only.
    let cache = std::sync::Arc::new(PipelineCache::new(&gpu.device));
    let options = EngineOptions { cache: Some(cache), ..EngineOptions::default() };
    let small = common::storage_buffer(&gpu, &[0.0; 64]);
    let small_g = common::storage_buffer(&gpu, &[0.0; 64]);
    drop(Optimizer::with_groups(&gpu.device, &gpu.queue, &[Adam::default().into()], &[ParamSlice::whole(&small, &small_g)], options.clone()).unwrap());
    let cap = vm_size() + 4 * n as u64; // room for one state slot, Adam needs two
    let limit = libc::rlimit { rlim_cur: cap, rlim_max: cap };
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, &limit) }, 0);
    let r = Optimizer::with_groups(&gpu.device, &gpu.queue, &[Adam::default().into()], &[ParamSlice::whole(&p, &g)], options);
    println!("result: {:?}", r.as_ref().err());
}

/// Building an optimizer whose state does not fit the memory left returns
/// `OptimError::OutOfMemory`, in a child process whose address
/// space is capped (`setrlimit`), not a panic or an abort.
///
/// Not on GL: wgpu's GL backend does not learn of a failed allocation (the
/// driver allocates buffer storage lazily and wgpu does not poll
/// `glGetError` for `GL_OUT_OF_MEMORY`), so there is no error to return.
#[test]
fn out_of_memory_while_building_is_a_typed_error() {
    let Some(gpu) = common::gpu() else { return };
    if gpu.info.backend == wgpu::Backend::Gl {
        eprintln!("SKIP on GL: the backend reports no allocation failure (see the doc comment)");
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "oom_child", "--nocapture", "--test-threads=1"])
        .env(OOM_CHILD, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "the child failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let result = stdout.lines().find_map(|l| l.find("result: ").map(|at| &l[at..])).unwrap_or_else(|| panic!("the child printed no result: {stdout}"));
    eprintln!("{result}");
    assert!(result.starts_with("result: Some(OutOfMemory("), "expected OptimError::OutOfMemory, got {result}");
}
