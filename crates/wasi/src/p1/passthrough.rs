//! The preview1 trait for [`P1Ctx`]: every call on a descriptor of
//! wasmtime-wasi's context is translated (guest number to inner number)
//! and passed through; calls on sockets are Warden's.

use std::net::Shutdown;

use wasmtime_wasi::p1::types::{self, Errno};
use wasmtime_wasi::p1::wasi_snapshot_preview1::WasiSnapshotPreview1 as Inner;
use wiggle::{GuestMemory, GuestPtr};

use super::decode::{ciovec_bufs, iovec_bufs, subscriptions};
use super::sockets::{io_errno, socket_rights};
use super::table::{MAX_FDS, P1Ctx, Slot, Sock};

impl Inner for P1Ctx {
    fn set_hostcall_fuel(&mut self, fuel: usize) {
        Inner::set_hostcall_fuel(&mut self.inner, fuel);
    }

    fn args_get(
        &mut self,
        mem: &mut GuestMemory<'_>,
        argv: GuestPtr<GuestPtr<u8>>,
        argv_buf: GuestPtr<u8>,
    ) -> Result<(), types::Error> {
        Inner::args_get(&mut self.inner, mem, argv, argv_buf)
    }

    fn args_sizes_get(
        &mut self,
        mem: &mut GuestMemory<'_>,
    ) -> Result<(types::Size, types::Size), types::Error> {
        Inner::args_sizes_get(&mut self.inner, mem)
    }

    fn environ_get(
        &mut self,
        mem: &mut GuestMemory<'_>,
        environ: GuestPtr<GuestPtr<u8>>,
        environ_buf: GuestPtr<u8>,
    ) -> Result<(), types::Error> {
        Inner::environ_get(&mut self.inner, mem, environ, environ_buf)
    }

    fn environ_sizes_get(
        &mut self,
        mem: &mut GuestMemory<'_>,
    ) -> Result<(types::Size, types::Size), types::Error> {
        Inner::environ_sizes_get(&mut self.inner, mem)
    }

    fn clock_res_get(
        &mut self,
        mem: &mut GuestMemory<'_>,
        id: types::Clockid,
    ) -> Result<types::Timestamp, types::Error> {
        Inner::clock_res_get(&mut self.inner, mem, id)
    }

    fn clock_time_get(
        &mut self,
        mem: &mut GuestMemory<'_>,
        id: types::Clockid,
        precision: types::Timestamp,
    ) -> Result<types::Timestamp, types::Error> {
        Inner::clock_time_get(&mut self.inner, mem, id, precision)
    }

    fn proc_raise(
        &mut self,
        mem: &mut GuestMemory<'_>,
        sig: types::Signal,
    ) -> Result<(), types::Error> {
        Inner::proc_raise(&mut self.inner, mem, sig)
    }

    fn sched_yield(&mut self, mem: &mut GuestMemory<'_>) -> Result<(), types::Error> {
        Inner::sched_yield(&mut self.inner, mem)
    }

    fn random_get(
        &mut self,
        mem: &mut GuestMemory<'_>,
        buf: GuestPtr<u8>,
        buf_len: types::Size,
    ) -> Result<(), types::Error> {
        Inner::random_get(&mut self.inner, mem, buf, buf_len)
    }

    async fn fd_advise(
        &mut self,
        mem: &mut GuestMemory<'_>,
        fd: types::Fd,
        offset: types::Filesize,
        len: types::Filesize,
        advice: types::Advice,
    ) -> Result<(), types::Error> {
        let fd = self.wasi_fd(fd, Errno::Spipe)?;
        Inner::fd_advise(&mut self.inner, mem, fd, offset, len, advice).await
    }

    fn fd_allocate(
        &mut self,
        mem: &mut GuestMemory<'_>,
        fd: types::Fd,
        offset: types::Filesize,
        len: types::Filesize,
    ) -> Result<(), types::Error> {
        let fd = self.wasi_fd(fd, Errno::Spipe)?;
        Inner::fd_allocate(&mut self.inner, mem, fd, offset, len)
    }

    async fn fd_datasync(
        &mut self,
        mem: &mut GuestMemory<'_>,
        fd: types::Fd,
    ) -> Result<(), types::Error> {
        let fd = self.wasi_fd(fd, Errno::Inval)?;
        Inner::fd_datasync(&mut self.inner, mem, fd).await
    }

    async fn fd_sync(
        &mut self,
        mem: &mut GuestMemory<'_>,
        fd: types::Fd,
    ) -> Result<(), types::Error> {
        let fd = self.wasi_fd(fd, Errno::Inval)?;
        Inner::fd_sync(&mut self.inner, mem, fd).await
    }

    async fn fd_filestat_set_size(
        &mut self,
        mem: &mut GuestMemory<'_>,
        fd: types::Fd,
        size: types::Filesize,
    ) -> Result<(), types::Error> {
        let fd = self.wasi_fd(fd, Errno::Inval)?;
        Inner::fd_filestat_set_size(&mut self.inner, mem, fd, size).await
    }

    async fn fd_filestat_set_times(
        &mut self,
        mem: &mut GuestMemory<'_>,
        fd: types::Fd,
        atim: types::Timestamp,
        mtim: types::Timestamp,
        fst_flags: types::Fstflags,
    ) -> Result<(), types::Error> {
        let fd = self.wasi_fd(fd, Errno::Inval)?;
        Inner::fd_filestat_set_times(&mut self.inner, mem, fd, atim, mtim, fst_flags).await
    }

    async fn fd_pread(
        &mut self,
        mem: &mut GuestMemory<'_>,
        fd: types::Fd,
        iovs: types::IovecArray,
        offset: types::Filesize,
    ) -> Result<types::Size, types::Error> {
        let fd = self.wasi_fd(fd, Errno::Spipe)?;
        Inner::fd_pread(&mut self.inner, mem, fd, iovs, offset).await
    }

    async fn fd_pwrite(
        &mut self,
        mem: &mut GuestMemory<'_>,
        fd: types::Fd,
        ciovs: types::CiovecArray,
        offset: types::Filesize,
    ) -> Result<types::Size, types::Error> {
        let fd = self.wasi_fd(fd, Errno::Spipe)?;
        Inner::fd_pwrite(&mut self.inner, mem, fd, ciovs, offset).await
    }

    async fn fd_seek(
        &mut self,
        mem: &mut GuestMemory<'_>,
        fd: types::Fd,
        offset: types::Filedelta,
        whence: types::Whence,
    ) -> Result<types::Filesize, types::Error> {
        let fd = self.wasi_fd(fd, Errno::Spipe)?;
        Inner::fd_seek(&mut self.inner, mem, fd, offset, whence).await
    }

    fn fd_tell(
        &mut self,
        mem: &mut GuestMemory<'_>,
        fd: types::Fd,
    ) -> Result<types::Filesize, types::Error> {
        let fd = self.wasi_fd(fd, Errno::Spipe)?;
        Inner::fd_tell(&mut self.inner, mem, fd)
    }

    async fn fd_readdir(
        &mut self,
        mem: &mut GuestMemory<'_>,
        fd: types::Fd,
        buf: GuestPtr<u8>,
        buf_len: types::Size,
        cookie: types::Dircookie,
    ) -> Result<types::Size, types::Error> {
        let fd = self.wasi_fd(fd, Errno::Notdir)?;
        Inner::fd_readdir(&mut self.inner, mem, fd, buf, buf_len, cookie).await
    }

    fn fd_fdstat_set_rights(
        &mut self,
        mem: &mut GuestMemory<'_>,
        fd: types::Fd,
        fs_rights_base: types::Rights,
        fs_rights_inheriting: types::Rights,
    ) -> Result<(), types::Error> {
        let fd = self.wasi_fd(fd, Errno::Notsup)?;
        Inner::fd_fdstat_set_rights(
            &mut self.inner,
            mem,
            fd,
            fs_rights_base,
            fs_rights_inheriting,
        )
    }

    fn fd_prestat_dir_name(
        &mut self,
        mem: &mut GuestMemory<'_>,
        fd: types::Fd,
        path: GuestPtr<u8>,
        path_max_len: types::Size,
    ) -> Result<(), types::Error> {
        let fd = self.wasi_fd(fd, Errno::Notdir)?;
        Inner::fd_prestat_dir_name(&mut self.inner, mem, fd, path, path_max_len)
    }

    async fn path_create_directory(
        &mut self,
        mem: &mut GuestMemory<'_>,
        dirfd: types::Fd,
        path: GuestPtr<str>,
    ) -> Result<(), types::Error> {
        let dirfd = self.wasi_fd(dirfd, Errno::Notdir)?;
        Inner::path_create_directory(&mut self.inner, mem, dirfd, path).await
    }

    async fn path_filestat_get(
        &mut self,
        mem: &mut GuestMemory<'_>,
        dirfd: types::Fd,
        flags: types::Lookupflags,
        path: GuestPtr<str>,
    ) -> Result<types::Filestat, types::Error> {
        let dirfd = self.wasi_fd(dirfd, Errno::Notdir)?;
        Inner::path_filestat_get(&mut self.inner, mem, dirfd, flags, path).await
    }

    async fn path_filestat_set_times(
        &mut self,
        mem: &mut GuestMemory<'_>,
        dirfd: types::Fd,
        flags: types::Lookupflags,
        path: GuestPtr<str>,
        atim: types::Timestamp,
        mtim: types::Timestamp,
        fst_flags: types::Fstflags,
    ) -> Result<(), types::Error> {
        let dirfd = self.wasi_fd(dirfd, Errno::Notdir)?;
        Inner::path_filestat_set_times(
            &mut self.inner,
            mem,
            dirfd,
            flags,
            path,
            atim,
            mtim,
            fst_flags,
        )
        .await
    }

    async fn path_link(
        &mut self,
        mem: &mut GuestMemory<'_>,
        src_fd: types::Fd,
        src_flags: types::Lookupflags,
        src_path: GuestPtr<str>,
        target_fd: types::Fd,
        target_path: GuestPtr<str>,
    ) -> Result<(), types::Error> {
        let src_fd = self.wasi_fd(src_fd, Errno::Notdir)?;
        let target_fd = self.wasi_fd(target_fd, Errno::Notdir)?;
        Inner::path_link(
            &mut self.inner,
            mem,
            src_fd,
            src_flags,
            src_path,
            target_fd,
            target_path,
        )
        .await
    }

    async fn path_readlink(
        &mut self,
        mem: &mut GuestMemory<'_>,
        dirfd: types::Fd,
        path: GuestPtr<str>,
        buf: GuestPtr<u8>,
        buf_len: types::Size,
    ) -> Result<types::Size, types::Error> {
        let dirfd = self.wasi_fd(dirfd, Errno::Notdir)?;
        Inner::path_readlink(&mut self.inner, mem, dirfd, path, buf, buf_len).await
    }

    async fn path_remove_directory(
        &mut self,
        mem: &mut GuestMemory<'_>,
        dirfd: types::Fd,
        path: GuestPtr<str>,
    ) -> Result<(), types::Error> {
        let dirfd = self.wasi_fd(dirfd, Errno::Notdir)?;
        Inner::path_remove_directory(&mut self.inner, mem, dirfd, path).await
    }

    async fn path_rename(
        &mut self,
        mem: &mut GuestMemory<'_>,
        src_fd: types::Fd,
        src_path: GuestPtr<str>,
        dest_fd: types::Fd,
        dest_path: GuestPtr<str>,
    ) -> Result<(), types::Error> {
        let src_fd = self.wasi_fd(src_fd, Errno::Notdir)?;
        let dest_fd = self.wasi_fd(dest_fd, Errno::Notdir)?;
        Inner::path_rename(&mut self.inner, mem, src_fd, src_path, dest_fd, dest_path).await
    }

    async fn path_symlink(
        &mut self,
        mem: &mut GuestMemory<'_>,
        src_path: GuestPtr<str>,
        dirfd: types::Fd,
        dest_path: GuestPtr<str>,
    ) -> Result<(), types::Error> {
        let dirfd = self.wasi_fd(dirfd, Errno::Notdir)?;
        Inner::path_symlink(&mut self.inner, mem, src_path, dirfd, dest_path).await
    }

    async fn path_unlink_file(
        &mut self,
        mem: &mut GuestMemory<'_>,
        dirfd: types::Fd,
        path: GuestPtr<str>,
    ) -> Result<(), types::Error> {
        let dirfd = self.wasi_fd(dirfd, Errno::Notdir)?;
        Inner::path_unlink_file(&mut self.inner, mem, dirfd, path).await
    }

    async fn fd_close(
        &mut self,
        mem: &mut GuestMemory<'_>,
        fd: types::Fd,
    ) -> Result<(), types::Error> {
        match self.fds.get(&u32::from(fd)) {
            Some(Slot::Wasi(inner)) => {
                Inner::fd_close(&mut self.inner, mem, (*inner).into()).await?
            }
            // Dropping the socket closes it on the host at once.
            Some(Slot::Socket(_) | Slot::Pool(_)) => {}
            None => return Err(Errno::Badf.into()),
        }
        self.fds.remove(&u32::from(fd));
        Ok(())
    }

    async fn fd_fdstat_get(
        &mut self,
        mem: &mut GuestMemory<'_>,
        fd: types::Fd,
    ) -> Result<types::Fdstat, types::Error> {
        if let Some(Slot::Pool(_)) = self.fds.get(&u32::from(fd)) {
            // A pool is no file, directory or socket: an unknown type with
            // no rights (sock_open takes it; nothing else does).
            return Ok(types::Fdstat {
                fs_filetype: types::Filetype::Unknown,
                fs_flags: types::Fdflags::empty(),
                fs_rights_base: types::Rights::empty(),
                fs_rights_inheriting: types::Rights::empty(),
            });
        }
        if let Ok(s) = self.socket(fd) {
            let rights = socket_rights(&s.sock);
            return Ok(types::Fdstat {
                fs_filetype: if matches!(s.sock, Sock::Datagram(_)) {
                    types::Filetype::SocketDgram
                } else {
                    types::Filetype::SocketStream
                },
                fs_flags: if s.nonblocking {
                    types::Fdflags::NONBLOCK
                } else {
                    types::Fdflags::empty()
                },
                fs_rights_base: rights,
                fs_rights_inheriting: rights,
            });
        }
        let fd = self.wasi_fd(fd, Errno::Badf)?;
        Inner::fd_fdstat_get(&mut self.inner, mem, fd).await
    }

    fn fd_fdstat_set_flags(
        &mut self,
        mem: &mut GuestMemory<'_>,
        fd: types::Fd,
        flags: types::Fdflags,
    ) -> Result<(), types::Error> {
        if let Some(Slot::Socket(s)) = self.fds.get_mut(&u32::from(fd)) {
            if !(flags - types::Fdflags::NONBLOCK).is_empty() {
                return Err(Errno::Inval.into());
            }
            s.nonblocking = flags.contains(types::Fdflags::NONBLOCK);
            return Ok(());
        }
        let fd = self.wasi_fd(fd, Errno::Badf)?;
        Inner::fd_fdstat_set_flags(&mut self.inner, mem, fd, flags)
    }

    async fn fd_filestat_get(
        &mut self,
        mem: &mut GuestMemory<'_>,
        fd: types::Fd,
    ) -> Result<types::Filestat, types::Error> {
        if self.socket(fd).is_ok() {
            return Ok(types::Filestat {
                dev: 0,
                ino: 0,
                filetype: types::Filetype::SocketStream,
                nlink: 1,
                size: 0,
                atim: 0,
                mtim: 0,
                ctim: 0,
            });
        }
        let fd = self.wasi_fd(fd, Errno::Badf)?;
        Inner::fd_filestat_get(&mut self.inner, mem, fd).await
    }

    async fn fd_read(
        &mut self,
        mem: &mut GuestMemory<'_>,
        fd: types::Fd,
        iovs: types::IovecArray,
    ) -> Result<types::Size, types::Error> {
        if self.is_socket(fd) {
            return self.recv(mem, fd, iovs, false, false).await;
        }
        let fd = self.wasi_fd(fd, Errno::Badf)?;
        Inner::fd_read(&mut self.inner, mem, fd, iovs).await
    }

    async fn fd_write(
        &mut self,
        mem: &mut GuestMemory<'_>,
        fd: types::Fd,
        ciovs: types::CiovecArray,
    ) -> Result<types::Size, types::Error> {
        if self.is_socket(fd) {
            return self.send(mem, fd, ciovs).await;
        }
        let fd = self.wasi_fd(fd, Errno::Badf)?;
        Inner::fd_write(&mut self.inner, mem, fd, ciovs).await
    }

    fn fd_prestat_get(
        &mut self,
        mem: &mut GuestMemory<'_>,
        fd: types::Fd,
    ) -> Result<types::Prestat, types::Error> {
        // Sockets are answered by `link_p1`'s shadow, which can write a
        // non-`dir` tag; this typed path can only say "not a preopen".
        let fd = self.wasi_fd(fd, Errno::Badf)?;
        Inner::fd_prestat_get(&mut self.inner, mem, fd)
    }

    async fn fd_renumber(
        &mut self,
        mem: &mut GuestMemory<'_>,
        from: types::Fd,
        to: types::Fd,
    ) -> Result<(), types::Error> {
        let (from_n, to_n) = (u32::from(from), u32::from(to));
        if !self.fds.contains_key(&from_n) || !self.fds.contains_key(&to_n) {
            return Err(Errno::Badf.into());
        }
        if from_n == to_n {
            return Ok(());
        }
        if let Some(Slot::Wasi(inner)) = self.fds.get(&to_n) {
            Inner::fd_close(&mut self.inner, mem, (*inner).into()).await?;
        }
        let slot = self.fds.remove(&from_n).expect("checked above");
        self.fds.insert(to_n, slot);
        Ok(())
    }

    #[allow(clippy::too_many_arguments, reason = "the preview1 signature")]
    async fn path_open(
        &mut self,
        mem: &mut GuestMemory<'_>,
        dirfd: types::Fd,
        dirflags: types::Lookupflags,
        path: GuestPtr<str>,
        oflags: types::Oflags,
        fs_rights_base: types::Rights,
        fs_rights_inheriting: types::Rights,
        fdflags: types::Fdflags,
    ) -> Result<types::Fd, types::Error> {
        let dirfd = self.wasi_fd(dirfd, Errno::Notdir)?;
        if self.fds.len() >= MAX_FDS {
            return Err(Errno::Mfile.into());
        }
        let opened = Inner::path_open(
            &mut self.inner,
            mem,
            dirfd,
            dirflags,
            path,
            oflags,
            fs_rights_base,
            fs_rights_inheriting,
            fdflags,
        )
        .await?;
        Ok(self.alloc(Slot::Wasi(opened.into()))?)
    }

    async fn poll_oneoff(
        &mut self,
        mem: &mut GuestMemory<'_>,
        subs: GuestPtr<types::Subscription>,
        events: GuestPtr<types::Event>,
        nsubscriptions: types::Size,
    ) -> Result<types::Size, types::Error> {
        let all = subscriptions(mem, subs, nsubscriptions)?;
        let ready = self.poll(all).await?;
        let out = events.as_array(nsubscriptions);
        for (i, event) in ready.iter().enumerate() {
            let slot = out.get(i as u32).ok_or(Errno::Fault)?;
            mem.write(slot, event.clone())?;
        }
        Ok(ready.len() as u32)
    }

    fn proc_exit(&mut self, mem: &mut GuestMemory<'_>, status: types::Exitcode) -> wasmtime::Error {
        Inner::proc_exit(&mut self.inner, mem, status)
    }

    fn sock_accept(
        &mut self,
        _mem: &mut GuestMemory<'_>,
        fd: types::Fd,
        flags: types::Fdflags,
    ) -> Result<types::Fd, types::Error> {
        // `link_p1` installs the waiting version; this one never waits.
        self.try_accept(fd, flags)?
            .ok_or_else(|| Errno::Again.into())
    }

    fn sock_recv(
        &mut self,
        mem: &mut GuestMemory<'_>,
        fd: types::Fd,
        ri_data: types::IovecArray,
        ri_flags: types::Riflags,
    ) -> Result<(types::Size, types::Roflags), types::Error> {
        // `link_p1` installs the waiting version; this one never waits.
        let buf = iovec_bufs(mem, ri_data)?
            .into_iter()
            .next()
            .unwrap_or(GuestPtr::new((0, 0)));
        let peek = ri_flags.contains(types::Riflags::RECV_PEEK);
        let n = self.try_recv(mem, fd, buf, peek)?.ok_or(Errno::Again)?;
        Ok((n, types::Roflags::empty()))
    }

    fn sock_send(
        &mut self,
        mem: &mut GuestMemory<'_>,
        fd: types::Fd,
        si_data: types::CiovecArray,
        _si_flags: types::Siflags,
    ) -> Result<types::Size, types::Error> {
        // `link_p1` installs the waiting version; this one never waits.
        let buf = ciovec_bufs(mem, si_data)?
            .into_iter()
            .next()
            .unwrap_or(GuestPtr::new((0, 0)));
        Ok(self.try_send(mem, fd, buf)?.ok_or(Errno::Again)?)
    }

    fn sock_shutdown(
        &mut self,
        _mem: &mut GuestMemory<'_>,
        fd: types::Fd,
        how: types::Sdflags,
    ) -> Result<(), types::Error> {
        let how = match (
            how.contains(types::Sdflags::RD),
            how.contains(types::Sdflags::WR),
        ) {
            (true, true) => Shutdown::Both,
            (true, false) => Shutdown::Read,
            (false, true) => Shutdown::Write,
            (false, false) => return Err(Errno::Inval.into()),
        };
        self.stream(fd)?
            .shutdown(how)
            .map_err(|e| io_errno(&e).into())
    }
}
