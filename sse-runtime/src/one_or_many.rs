//! A slice that keeps a single element inline.
//!
//! Most streams have one group, and an open stream keeps several records per group (its name,
//! where it stands, whether the group ended, its place among the group's members, its
//! position). As vectors, each would be an allocation of its own: 32 bytes with the
//! allocator's header for 8 or 16 of data, several per idle stream.

use std::{
    fmt,
    ops::{Deref, DerefMut},
};

/// A boxed slice, or its only element inline.
pub(crate) enum OneOrMany<T> {
    One([T; 1]),
    Many(Box<[T]>),
}

impl<T> From<Vec<T>> for OneOrMany<T> {
    fn from(mut items: Vec<T>) -> Self {
        match (items.len(), items.pop()) {
            (1, Some(one)) => OneOrMany::One([one]),
            (_, last) => {
                items.extend(last);
                OneOrMany::Many(items.into_boxed_slice())
            }
        }
    }
}

impl<T> FromIterator<T> for OneOrMany<T> {
    fn from_iter<I: IntoIterator<Item = T>>(items: I) -> Self {
        items.into_iter().collect::<Vec<T>>().into()
    }
}

impl<T> Deref for OneOrMany<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        match self {
            OneOrMany::One(one) => one,
            OneOrMany::Many(many) => many,
        }
    }
}

impl<T> DerefMut for OneOrMany<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        match self {
            OneOrMany::One(one) => one,
            OneOrMany::Many(many) => many,
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for OneOrMany<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self[..].fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_is_inline_and_every_count_keeps_its_elements() {
        let one: OneOrMany<u8> = vec![7].into();
        assert!(matches!(one, OneOrMany::One([7])));
        for count in [0, 2, 3] {
            let many: OneOrMany<usize> = (0..count).collect();
            assert!(matches!(many, OneOrMany::Many(_)));
            assert_eq!(&many[..], (0..count).collect::<Vec<_>>());
        }
        let mut changed: OneOrMany<u8> = vec![1].into();
        changed[0] = 2;
        assert_eq!(&changed[..], [2]);
    }
}
