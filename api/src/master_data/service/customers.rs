//! Customers: their filter and input types, and the service methods that list, read, create, update
//! and delete them. Every customer field is a sensitive contact field, sealed at rest (see `sensitive`).

use chrono::Utc;
use entities::customer;
use sea_orm::{ActiveValue::Set, QueryFilter};
use serde::Serialize;
use uuid::Uuid;

use super::{
    Direction, MasterDataService, NAME_MAX, delete_owned, find_visible, require, versioned_update,
    visible_rows,
};
use crate::{
    auth::Principal,
    db::pagination::{Page, PageArgs, SortKey},
    error::{ApiError, ApiResult},
    master_data::{
        sensitive::{self, CustomerContact},
        validate,
    },
    policy::{Action, Need, ReceivedShares, SharedEntity, authorize, sensitive_visible},
};

// ---- inputs (plain data; the GraphQL layer converts into these) ----

#[derive(Debug, Default)]
pub struct CustomerFilter {
    pub email: Option<String>,
}

#[derive(Serialize)]
pub struct NewCustomer {
    pub contact: CustomerContact,
}

#[derive(Default)]
pub struct CustomerPatch {
    pub name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<Option<String>>,
    pub address: Option<Option<String>>,
}

impl MasterDataService {
    pub async fn customers(
        &self,
        principal: &Principal,
        filter: CustomerFilter,
        direction: Direction,
        args: PageArgs,
        with_total: bool,
    ) -> ApiResult<Page<customer::Model>> {
        let mut select = visible_rows::<customer::Entity>(principal)?;
        if let Some(email) = filter.email {
            // Only among customers whose email the caller may read: the count must not confirm guesses.
            select = select
                .filter(sensitive::email_equals(
                    &self.vault,
                    &validate::email(&email)?,
                ))
                .filter(sensitive_visible::<customer::Entity>(principal));
        }
        // Sensitive fields are not sort keys (they are ciphertext): customers sort by creation.
        let by: (_, _, fn(&customer::Model) -> SortKey) =
            (customer::Column::CreatedAt, "createdAt", |c| {
                SortKey::Time(c.created_at)
            });
        self.page(select, by, direction, args, with_total).await
    }

    pub async fn customer(&self, principal: &Principal, id: Uuid) -> ApiResult<customer::Model> {
        find_visible::<customer::Entity, _>(&self.db, principal, id, Need::Read).await
    }

    pub async fn create_customer(
        &self,
        principal: &Principal,
        input: NewCustomer,
        idempotency_key: Option<&str>,
    ) -> ApiResult<customer::Model> {
        authorize(principal, Action::WriteRecords)?;
        let contact = validate_contact(input.contact.clone())?;
        let now = Utc::now();
        let id = Uuid::now_v7();
        let mut model = customer::ActiveModel {
            id: Set(id),
            owner_organization_id: Set(principal.organization_id),
            version: Set(1),
            created_at: Set(now),
            updated_at: Set(now),
            ..Default::default()
        };
        sensitive::write_contact(
            &mut model,
            sensitive::seal_contact(&self.vault, id, &contact)?,
        );
        self.create_once_sensitive::<customer::Entity>(
            principal,
            "createCustomer",
            idempotency_key,
            &input,
            model,
        )
        .await
    }

    /// One contact field of a customer, in clear for the owner and for organizations whose share
    /// includes sensitive fields (`shares`: the caller's received shares); null for the others, for
    /// whom nothing is decrypted.
    pub async fn customer_field(
        &self,
        principal: &Principal,
        shares: &ReceivedShares,
        customer: &customer::Model,
        field: sensitive::ContactField,
    ) -> ApiResult<Option<String>> {
        let allowed = shares.may_read_sensitive(
            principal,
            customer::Entity::RESOURCE,
            customer.owner_organization_id,
            customer.id,
        );
        if !allowed {
            return Ok(None);
        }
        sensitive::read_field(&self.vault, customer, field).await
    }

    pub async fn update_customer(
        &self,
        principal: &Principal,
        id: Uuid,
        version: i32,
        patch: CustomerPatch,
    ) -> ApiResult<customer::Model> {
        authorize(principal, Action::WriteRecords)?;
        // Every field of a customer is a contact field: changing one needs the right to read them, and
        // nothing is decrypted for a caller without it (NOT_FOUND or FORBIDDEN first).
        let need = Need::WriteSensitive;
        // Contact fields change together through the one accessor, so read the current ones first.
        let current = match find_visible::<customer::Entity, _>(&self.db, principal, id, need).await
        {
            Err(ApiError::NotFound { .. }) => {
                // Say why (NOT_FOUND, or FORBIDDEN for a share without sensitive fields).
                require::<customer::Entity, _>(&self.db, principal, id, need).await?;
                return Err(ApiError::not_found("customer"));
            }
            other => other?,
        };
        let mut contact = sensitive::read_contact(&self.vault, &current).await?;
        if let Some(name) = patch.name {
            contact.name = name;
        }
        if let Some(email) = patch.email {
            contact.email = email;
        }
        if let Some(phone) = patch.phone {
            contact.phone = phone;
        }
        if let Some(address) = patch.address {
            contact.address = address;
        }
        let mut changes: customer::ActiveModel = Default::default();
        // Every field is sealed again under the current key: a row's fields share one key id.
        let contact = validate_contact(contact)?;
        sensitive::write_contact(
            &mut changes,
            sensitive::seal_contact(&self.vault, id, &contact)?,
        );
        versioned_update::<customer::Entity>(&self.db, principal, id, version, changes, need).await
    }

    pub async fn delete_customer(&self, principal: &Principal, id: Uuid) -> ApiResult<Uuid> {
        delete_owned::<customer::Entity>(&self.db, principal, id).await
    }
}

fn validate_contact(contact: CustomerContact) -> ApiResult<CustomerContact> {
    Ok(CustomerContact {
        name: validate::text("name", &contact.name, NAME_MAX)?,
        email: validate::email(&contact.email)?,
        phone: validate::optional_text("phone", contact.phone.as_deref(), 40)?,
        address: validate::optional_text("address", contact.address.as_deref(), 500)?,
    })
}
