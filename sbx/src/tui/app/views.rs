//! The derived views of the dashboard's state: the sorted and filtered rows of each
//! pane (rebuilt lazily, at most once per frame), the process tree, the selection.

use super::*;

impl App {
    /// The violations rows in display order (filtered, sorted), rebuilt if
    /// anything changed since the last call.
    pub(in crate::tui) fn rows(&self) -> Ref<'_, Vec<u32>> {
        {
            let mut views = self.views.borrow_mut();
            if views.rows_dirty {
                views.rows_dirty = false;
                let filter = self.filter.as_str();
                let mut rows: Vec<u32> = std::mem::take(&mut views.rows);
                rows.clear();
                rows.extend((0..self.aggs.len() as u32).filter(|&i| {
                    let a = &self.aggs[i as usize];
                    filter.is_empty()
                        || contains_ci(&a.object, filter)
                        || contains_ci(&a.op, filter)
                        || contains_ci(a.source.as_str(), filter)
                        || a.procs.iter().any(|(_, c)| contains_ci(c, filter))
                }));
                let aggs = &self.aggs;
                match self.sort {
                    SortKey::Count => rows.sort_unstable_by(|&a, &b| {
                        let (a, b) = (&aggs[a as usize], &aggs[b as usize]);
                        b.count.cmp(&a.count).then(b.last_seq.cmp(&a.last_seq))
                    }),
                    SortKey::LastSeen => rows.sort_unstable_by_key(|&a| std::cmp::Reverse(aggs[a as usize].last_seq)),
                    SortKey::Source => rows.sort_unstable_by(|&a, &b| {
                        let (a, b) = (&aggs[a as usize], &aggs[b as usize]);
                        a.source.cmp(&b.source).then(b.count.cmp(&a.count)).then(b.last_seq.cmp(&a.last_seq))
                    }),
                    SortKey::Object => rows.sort_unstable_by(|&a, &b| {
                        let (a, b) = (&aggs[a as usize], &aggs[b as usize]);
                        a.object.cmp(&b.object).then(a.source.cmp(&b.source)).then(a.op.cmp(&b.op))
                    }),
                }
                views.rows = rows;
            }
        }
        Ref::map(self.views.borrow(), |v| &v.rows)
    }

    /// Host names, most recent decision first.
    pub(in crate::tui) fn host_rows(&self) -> Ref<'_, Vec<String>> {
        {
            let mut views = self.views.borrow_mut();
            if views.hosts_dirty {
                views.hosts_dirty = false;
                let mut names: Vec<(u64, &String)> = self.hosts.iter().map(|(k, h)| (h.last_seq, k)).collect();
                names.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
                views.hosts = names.into_iter().map(|(_, k)| k.clone()).collect();
            }
        }
        Ref::map(self.views.borrow(), |v| &v.hosts)
    }

    /// The process tree in display order, rebuilt (O(processes), no sort)
    /// if a process came, went or changed parent since the last call.
    pub(in crate::tui) fn proc_rows(&self) -> Ref<'_, Vec<TreeRow>> {
        {
            let mut views = self.views.borrow_mut();
            if views.procs_dirty {
                views.procs_dirty = false;
                let mut rows = std::mem::take(&mut views.procs);
                self.build_tree(&mut rows);
                views.procs = rows;
            }
        }
        Ref::map(self.views.borrow(), |v| &v.procs)
    }

    /// Depth-first order of the processes: a process is a child of its
    /// `ppid` when that process is known, else a root; siblings and roots in
    /// order of first appearance. Iterative (no recursion on deep trees);
    /// processes on a cycle of parents (pid reuse) are listed from the first
    /// seen of them.
    pub(super) fn build_tree(&self, rows: &mut Vec<TreeRow>) {
        const NONE: u32 = u32::MAX;
        rows.clear();
        let pids: Vec<u32> = self.proc_order.values().copied().collect();
        let n = pids.len();
        let index: HashMap<u32, u32> = pids.iter().enumerate().map(|(i, &pid)| (pid, i as u32)).collect();
        let (mut first_child, mut last_child, mut next_sibling) = (vec![NONE; n], vec![NONE; n], vec![NONE; n]);
        let mut roots = Vec::new();
        for (i, pid) in pids.iter().enumerate() {
            let parent = self.procs.get(pid).and_then(|p| p.ppid).filter(|pp| pp != pid).and_then(|pp| index.get(&pp).copied());
            match parent {
                Some(p) => {
                    let p = p as usize;
                    if first_child[p] == NONE {
                        first_child[p] = i as u32;
                    } else {
                        next_sibling[last_child[p] as usize] = i as u32;
                    }
                    last_child[p] = i as u32;
                }
                None => roots.push(i as u32),
            }
        }
        let mut visited = vec![false; n];
        let mut stack: Vec<(u32, u32, bool, u64)> = Vec::new();
        let mut children = Vec::new();
        // Roots, then whatever a cycle kept unreachable.
        for start in roots.into_iter().chain(0..n as u32) {
            if visited[start as usize] {
                continue;
            }
            stack.push((start, 0, true, 0));
            while let Some((i, depth, last, rails)) = stack.pop() {
                if std::mem::replace(&mut visited[i as usize], true) {
                    continue;
                }
                rows.push(TreeRow { pid: pids[i as usize], depth, last, rails });
                let rails = if depth > 0 && !last && depth < 64 { rails | (1 << depth) } else { rails };
                children.clear();
                let mut c = first_child[i as usize];
                while c != NONE {
                    if !visited[c as usize] {
                        children.push(c);
                    }
                    c = next_sibling[c as usize];
                }
                let count = children.len();
                stack.extend(children.iter().enumerate().rev().map(|(k, &c)| (c, depth + 1, k + 1 == count, rails)));
            }
        }
    }

    /// The ancestry of `pid`, innermost first (`pid` itself, its parent,
    /// ...): at most `MAX_ANCESTORS` ancestors (the nearest), followed by why
    /// the walk stopped when an ancestor is unknown. Innermost first so that
    /// the nearest survive when the detail pane is short.
    pub(in crate::tui) fn ancestry(&self, pid: u32) -> Vec<Ancestor<'_>> {
        fn known(pid: u32, p: &Proc) -> Ancestor<'_> {
            Ancestor::Known(pid, p.comm.as_str(), p.execs.back().map_or(&[][..], |a| a.as_slice()))
        }
        let mut out = Vec::new();
        let Some(mut proc) = self.procs.get(&pid) else {
            out.push(Ancestor::NoParent { child: pid });
            return out;
        };
        out.push(known(pid, proc));
        let mut child = pid;
        let mut seen = vec![pid];
        loop {
            let Some(ppid) = proc.ppid else {
                out.push(Ancestor::NoParent { child });
                break;
            };
            if seen.contains(&ppid) {
                out.push(Ancestor::Loop { pid: ppid });
                break;
            }
            let Some(parent) = self.procs.get(&ppid) else {
                out.push(Ancestor::Unseen { pid: ppid, child });
                break;
            };
            if seen.len() > MAX_ANCESTORS {
                out.push(Ancestor::More);
                break;
            }
            out.push(known(ppid, parent));
            seen.push(ppid);
            (child, proc) = (ppid, parent);
        }
        out
    }

    /// The selected row's position in `rows()` and its aggregate index.
    pub(in crate::tui) fn selection(&self) -> Option<(usize, u32)> {
        let rows = self.rows();
        if let Some(sel) = self.selected
            && let Some(pos) = rows.iter().position(|&r| r == sel)
        {
            return Some((pos, sel));
        }
        rows.first().map(|&r| (0, r))
    }

    pub(super) fn move_selection(&mut self, delta: isize) {
        let pos = self.selection().map_or(0, |(p, _)| p);
        let rows = self.rows();
        if rows.is_empty() {
            return;
        }
        let target = pos.saturating_add_signed(delta).min(rows.len() - 1);
        let id = rows[target];
        drop(rows);
        self.selected = Some(id);
    }

    pub(super) fn mark_rows_dirty(&mut self) {
        self.views.get_mut().rows_dirty = true;
    }
}
