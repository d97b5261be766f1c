//! `wire_state!`: a state the wire carries as a protobuf enum (an `i32`), mirrored as a serde
//! enum for the JSON API and the coordinator's stored rows; and the same without a wire enum
//! for states the coordinator derives. Each variant is spelled as the string it replaced
//! (`snake_case`), so JSON and rows stay byte-identical; `unknown` stands for the unspecified
//! value and for any value this version does not know, on the wire and in JSON alike.

macro_rules! wire_state {
    (
        $(#[$doc:meta])*
        $name:ident from $wire:ident { $($variant:ident => $text:literal,)+ }
    ) => {
        wire_state! { $(#[$doc])* $name { $($variant => $text,)+ } }

        impl $name {
            /// From the wire's value (an `i32` in the protobuf message).
            pub fn from_wire(value: i32) -> Self {
                match $crate::pb::$wire::try_from(value) {
                    $(Ok($crate::pb::$wire::$variant) => $name::$variant,)+
                    _ => $name::Unknown,
                }
            }
        }
    };
    (
        $(#[$doc:meta])*
        $name:ident { $($variant:ident => $text:literal,)+ }
    ) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord,
            serde::Serialize, serde::Deserialize,
        )]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($variant,)+
            /// Not reported yet, or a value this version does not know.
            #[default]
            #[serde(other)]
            Unknown,
        }

        impl $name {
            /// Every known value, then `Unknown`.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+ $name::Unknown];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                    $name::Unknown => "unknown",
                }
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::api::UnknownValue;

            /// The name `as_str` writes; any other text is an error (not `Unknown`).
            fn from_str(text: &str) -> Result<Self, Self::Err> {
                $name::ALL
                    .iter()
                    .copied()
                    .find(|s| s.as_str() == text)
                    .ok_or_else(|| $crate::api::UnknownValue {
                        what: stringify!($name),
                        text: text.to_owned(),
                        known: $name::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
                    })
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
