//! Timing a recorded step: GPU timestamp queries around the steps where the
//! adapter has them, else the host's wall clock around submit and wait;
//! the median of the repetitions.

use std::time::Instant;

use crate::error::{OptimError, Result};

/// How the GPU time of a measurement is taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Clock {
    /// GPU timestamp queries around the recorded steps.
    GpuTimestamps,
    /// Host wall clock around submit and wait (adapters without timestamps).
    WallClock,
}

/// Times recorded GPU work: timestamps where the device has
/// `TIMESTAMP_QUERY`, else wall clock around submit + wait.
pub struct Timer {
    device: wgpu::Device,
    queue: wgpu::Queue,
    query: Option<(wgpu::QuerySet, wgpu::Buffer, wgpu::Buffer)>,
}

impl Timer {
    /// A timer for `device`.
    pub fn new(device: &wgpu::Device, queue: &wgpu::Queue) -> Self {
        let query = device.features().contains(wgpu::Features::TIMESTAMP_QUERY).then(|| {
            let set = device.create_query_set(&wgpu::QuerySetDescriptor { label: Some("bench timestamps"), ty: wgpu::QueryType::Timestamp, count: 2 });
            let resolve = device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("bench resolve"),
                size: 16,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            });
            let read = device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("bench timestamps read"),
                size: 16,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            (set, resolve, read)
        });
        Timer { device: device.clone(), queue: queue.clone(), query }
    }

    /// Which clock this timer uses.
    pub fn clock(&self) -> Clock {
        if self.query.is_some() { Clock::GpuTimestamps } else { Clock::WallClock }
    }

    fn wait(&self) -> Result<()> {
        self.device.poll(wgpu::PollType::wait_indefinitely()).map(|_| ()).map_err(|e| OptimError::Readback(e.to_string()))
    }

    /// Seconds of one submission of the work `record` puts in an encoder
    /// (the host time to record is not included with timestamps).
    pub fn time_once(&self, record: &mut dyn FnMut(&mut wgpu::CommandEncoder) -> Result<()>) -> Result<f64> {
        let mut enc = self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("bench") });
        let marker = |enc: &mut wgpu::CommandEncoder, index: u32| {
            if let Some((set, _, _)) = &self.query {
                let writes = wgpu::ComputePassTimestampWrites {
                    query_set: set,
                    beginning_of_pass_write_index: (index == 0).then_some(0),
                    end_of_pass_write_index: (index == 1).then_some(1),
                };
                enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("bench marker"), timestamp_writes: Some(writes) });
            }
        };
        marker(&mut enc, 0);
        record(&mut enc)?;
        marker(&mut enc, 1);
        if let Some((set, resolve, read)) = &self.query {
            enc.resolve_query_set(set, 0..2, resolve, 0);
            enc.copy_buffer_to_buffer(resolve, 0, read, 0, 16);
        }
        let start = Instant::now();
        self.queue.submit([enc.finish()]);
        self.wait()?;
        let wall = start.elapsed().as_secs_f64();
        let Some((_, _, read)) = &self.query else { return Ok(wall) };
        read.map_async(wgpu::MapMode::Read, .., |_| {});
        self.wait()?;
        let ticks: [u64; 2] = {
            let view = read.get_mapped_range(..).map_err(|e| OptimError::Readback(e.to_string()))?;
            bytemuck::pod_read_unaligned(&view[..16])
        };
        read.unmap();
        Ok(ticks[1].saturating_sub(ticks[0]) as f64 * self.queue.get_timestamp_period() as f64 * 1e-9)
    }

    /// Median seconds per step over `reps` submissions of `steps` steps each,
    /// after one warm-up submission.
    pub fn per_step(&self, reps: u32, steps: u32, record_step: &mut dyn FnMut(&mut wgpu::CommandEncoder) -> Result<()>) -> Result<f64> {
        let mut record = |enc: &mut wgpu::CommandEncoder| (0..steps).try_for_each(|_| record_step(enc));
        self.time_once(&mut record)?;
        let mut samples = (0..reps.max(1)).map(|_| self.time_once(&mut record)).collect::<Result<Vec<_>>>()?;
        samples.sort_by(f64::total_cmp);
        Ok(samples[samples.len() / 2] / steps.max(1) as f64)
    }
}
