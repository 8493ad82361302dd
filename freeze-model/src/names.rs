//! One name table per enum: `named_enum!` declares the enum and its names together, and derives
//! from that single table `as_str`, `from_name`, `Display`, and serde (as a plain string), so the
//! trace, the JSON output, the text output and the parsers can never spell a name two ways.

/// Declares `pub enum NAME { Variant = "name", ... }` with its name table. Variants keep their
/// declaration order for `Ord` (severities rely on it).
macro_rules! named_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [Self] = &[$(Self::$variant,)+];
            /// Every name, in declaration order.
            pub const NAMES: &'static [&'static str] = &[$($text,)+];

            /// The name used in traces, JSON and text.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)+
                }
            }

            /// The variant with this name.
            pub fn from_name(name: &str) -> Option<Self> {
                match name {
                    $($text => Some(Self::$variant),)+
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct Names;
                impl serde::de::Visitor<'_> for Names {
                    type Value = $name;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(f, "one of {:?}", $name::NAMES)
                    }
                    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<$name, E> {
                        $name::from_name(v).ok_or_else(|| E::unknown_variant(v, $name::NAMES))
                    }
                }
                d.deserialize_str(Names)
            }
        }
    };
}

pub(crate) use named_enum;

#[cfg(test)]
mod tests {
    named_enum! {
        /// A test enum.
        pub enum Color {
            Red = "red",
            DarkBlue = "dark-blue",
        }
    }

    #[test]
    fn one_table_gives_every_spelling() {
        for c in Color::ALL {
            assert_eq!(Color::from_name(c.as_str()), Some(*c));
            let json = serde_json::to_string(c).expect("serialises");
            assert_eq!(json, format!("\"{c}\""));
            assert_eq!(serde_json::from_str::<Color>(&json).expect("parses"), *c);
        }
        let err = serde_json::from_str::<Color>("\"green\"").expect_err("unknown");
        assert!(err.to_string().starts_with("unknown variant `green`"), "{err}");
        assert!(Color::Red < Color::DarkBlue);
    }
}
