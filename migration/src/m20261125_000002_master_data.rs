//! Master data (locations, products, customers, devices) and the shares that open them to partners.
//!
//! Foreign keys refuse deletion (NO ACTION, checked at the end of the statement): a record that others reference (a location with devices, later a product
//! on an order) cannot be deleted, and the hub answers CONFLICT.

use sea_orm_migration::{prelude::*, schema::*};

use crate::common::{OnDelete, VersionedColumns, create_indexes, drop_tables, foreign_key, index};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Organization {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Location {
    Table,
    Id,
    OwnerOrganizationId,
    Name,
    Kind,
    Street,
    City,
    PostalCode,
    CountryCode,
    Version,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Product {
    Table,
    Id,
    OwnerOrganizationId,
    Sku,
    Name,
    Description,
    PriceMinor,
    Currency,
    SupplierOrganizationId,
    Version,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Customer {
    Table,
    Id,
    OwnerOrganizationId,
    Name,
    Email,
    Phone,
    Address,
    Version,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Device {
    Table,
    Id,
    OwnerOrganizationId,
    LocationId,
    Name,
    PublicKey,
    Status,
    Version,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Share {
    Table,
    Id,
    OwnerOrganizationId,
    GranteeOrganizationId,
    ResourceType,
    RecordId,
    Access,
    IncludeSensitive,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let mut location = Table::create();
        location
            .table(Location::Table)
            .col(uuid(Location::Id).primary_key())
            .col(uuid(Location::OwnerOrganizationId))
            .col(ColumnDef::new(Location::Name).string_len(200).not_null())
            .col(ColumnDef::new(Location::Kind).string_len(16).not_null())
            .col(ColumnDef::new(Location::Street).string_len(200).not_null())
            .col(ColumnDef::new(Location::City).string_len(100).not_null())
            .col(
                ColumnDef::new(Location::PostalCode)
                    .string_len(20)
                    .not_null(),
            )
            .col(
                ColumnDef::new(Location::CountryCode)
                    .string_len(2)
                    .not_null(),
            )
            .foreign_key(&mut foreign_key(
                "fk_location_owner",
                (Location::Table, Location::OwnerOrganizationId),
                (Organization::Table, Organization::Id),
                OnDelete::NoAction,
            ))
            .versioned(Location::Version, Location::CreatedAt, Location::UpdatedAt);
        manager.create_table(location).await?;

        let mut product = Table::create();
        product
            .table(Product::Table)
            .col(uuid(Product::Id).primary_key())
            .col(uuid(Product::OwnerOrganizationId))
            .col(ColumnDef::new(Product::Sku).string_len(64).not_null())
            .col(ColumnDef::new(Product::Name).string_len(200).not_null())
            .col(ColumnDef::new(Product::Description).text().null())
            .col(big_integer(Product::PriceMinor))
            .col(ColumnDef::new(Product::Currency).string_len(3).not_null())
            .col(uuid_null(Product::SupplierOrganizationId))
            .check(Expr::col(Product::PriceMinor).gte(0))
            .foreign_key(&mut foreign_key(
                "fk_product_owner",
                (Product::Table, Product::OwnerOrganizationId),
                (Organization::Table, Organization::Id),
                OnDelete::NoAction,
            ))
            .foreign_key(&mut foreign_key(
                "fk_product_supplier",
                (Product::Table, Product::SupplierOrganizationId),
                (Organization::Table, Organization::Id),
                OnDelete::NoAction,
            ))
            .versioned(Product::Version, Product::CreatedAt, Product::UpdatedAt);
        manager.create_table(product).await?;

        let mut customer = Table::create();
        customer
            .table(Customer::Table)
            .col(uuid(Customer::Id).primary_key())
            .col(uuid(Customer::OwnerOrganizationId))
            .col(ColumnDef::new(Customer::Name).text().not_null())
            .col(ColumnDef::new(Customer::Email).text().not_null())
            .col(ColumnDef::new(Customer::Phone).text().null())
            .col(ColumnDef::new(Customer::Address).text().null())
            .foreign_key(&mut foreign_key(
                "fk_customer_owner",
                (Customer::Table, Customer::OwnerOrganizationId),
                (Organization::Table, Organization::Id),
                OnDelete::NoAction,
            ))
            .versioned(Customer::Version, Customer::CreatedAt, Customer::UpdatedAt);
        manager.create_table(customer).await?;

        let mut device = Table::create();
        device
            .table(Device::Table)
            .col(uuid(Device::Id).primary_key())
            .col(uuid(Device::OwnerOrganizationId))
            .col(uuid(Device::LocationId))
            .col(ColumnDef::new(Device::Name).string_len(200).not_null())
            .col(ColumnDef::new(Device::PublicKey).binary_len(32).not_null())
            .col(ColumnDef::new(Device::Status).string_len(16).not_null())
            .foreign_key(&mut foreign_key(
                "fk_device_owner",
                (Device::Table, Device::OwnerOrganizationId),
                (Organization::Table, Organization::Id),
                OnDelete::NoAction,
            ))
            .foreign_key(&mut foreign_key(
                "fk_device_location",
                (Device::Table, Device::LocationId),
                (Location::Table, Location::Id),
                OnDelete::NoAction,
            ))
            .versioned(Device::Version, Device::CreatedAt, Device::UpdatedAt);
        manager.create_table(device).await?;

        manager
            .create_table(
                Table::create()
                    .table(Share::Table)
                    .col(uuid(Share::Id).primary_key())
                    .col(uuid(Share::OwnerOrganizationId))
                    .col(uuid(Share::GranteeOrganizationId))
                    .col(
                        ColumnDef::new(Share::ResourceType)
                            .string_len(16)
                            .not_null(),
                    )
                    .col(uuid_null(Share::RecordId))
                    .col(ColumnDef::new(Share::Access).string_len(8).not_null())
                    .col(boolean(Share::IncludeSensitive))
                    .col(timestamp_with_time_zone(Share::CreatedAt))
                    .foreign_key(&mut foreign_key(
                        "fk_share_owner",
                        (Share::Table, Share::OwnerOrganizationId),
                        (Organization::Table, Organization::Id),
                        OnDelete::NoAction,
                    ))
                    .foreign_key(&mut foreign_key(
                        "fk_share_grantee",
                        (Share::Table, Share::GranteeOrganizationId),
                        (Organization::Table, Organization::Id),
                        OnDelete::NoAction,
                    ))
                    .to_owned(),
            )
            .await?;

        let indexes = [
            index(
                "ux_product_owner_sku",
                Product::Table,
                [Product::OwnerOrganizationId, Product::Sku],
            )
            .unique()
            .to_owned(),
            index(
                "ix_product_owner_name",
                Product::Table,
                [Product::OwnerOrganizationId, Product::Name],
            ),
            index(
                "ix_product_supplier",
                Product::Table,
                [Product::SupplierOrganizationId],
            ),
            index(
                "ix_location_owner_name",
                Location::Table,
                [Location::OwnerOrganizationId, Location::Name],
            ),
            index(
                "ix_customer_owner",
                Customer::Table,
                [Customer::OwnerOrganizationId, Customer::CreatedAt],
            ),
            index(
                "ix_device_owner",
                Device::Table,
                [Device::OwnerOrganizationId, Device::Name],
            ),
            index("ix_device_location", Device::Table, [Device::LocationId]),
            index(
                "ix_share_grantee",
                Share::Table,
                [Share::GranteeOrganizationId, Share::ResourceType],
            ),
            index("ix_share_owner", Share::Table, [Share::OwnerOrganizationId]),
        ];
        create_indexes(manager, indexes).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        drop_tables(
            manager,
            [
                Share::Table.into_iden(),
                Device::Table.into_iden(),
                Customer::Table.into_iden(),
                Product::Table.into_iden(),
                Location::Table.into_iden(),
            ],
        )
        .await
    }
}
